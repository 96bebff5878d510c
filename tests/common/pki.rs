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

/// An HTTPS server (Python's http.server in TLS, Debian python3) answering 200 with `body`
/// on every path, with the leaf `NAME.pem`/`NAME.key` of `dir`. Killed by its PID on drop.
pub struct HttpsServer {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl HttpsServer {
    pub fn start(dir: &Path, leaf: &str, body: &str) -> HttpsServer {
        let script = r#"
import http.server, ssl, sys
body = sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = c.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir.join(format!("{leaf}.pem")))
            .arg(dir.join(format!("{leaf}.key")))
            .arg(body)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("https server did not start: {line:?}"));
        HttpsServer { child, port }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
