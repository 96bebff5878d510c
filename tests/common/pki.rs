//! A test PKI made with the openssl command (Debian `openssl`, installed by tests/run.sh),
//! as an operator's own would be: a CA certificate that is not the leaf, leaves signed by it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs openssl with `args` in `dir`; panics with its error output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes a CA certificate and key (`ca.pem`, `ca.key`; ECDSA P-256, two days) into `dir`.
pub fn ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gslbd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Writes a leaf certificate and key (`NAME.pem`, `NAME.key`; ECDSA P-256) signed by the CA
/// of [`ca`] into `dir`, with `subject` (e.g. `/CN=probe.test`) and the X.509v3 extension
/// lines in `extensions` (e.g. `subjectAltName=IP:127.0.0.1`), after `basicConstraints=CA:FALSE`.
pub fn leaf(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let (key, csr, pem, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), format!("basicConstraints=CA:FALSE\n{extensions}\n")).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}
