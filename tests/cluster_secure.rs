//! Cluster mode against an etcd that asks what a production one asks (issue 12): client
//! ports on TLS with client certificates (`--client-cert-auth`) and etcd's own auth, the
//! gslbd user allowed nothing but its prefix. Instances with the CA, their certificate and
//! key and the right `credentials_file` join and share a drain; one with a wrong password
//! or without a client certificate does not join, says why, and keeps answering.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::etcd::{EtcdCluster, ServerTls, gslb_config};
use common::*;
use hickory_proto::rr::RecordType;

const TOKEN: &str = "test-token-ops";
const US: &str = "192.0.2.11";
const EU: &str = "192.0.2.12";

/// A CA, and leaves for etcd's server (127.0.0.1) and for gslbd as its client.
fn make_pki(dir: &Path) {
    pki::ca(dir);
    // clientAuth too: etcd's gateway dials its own gRPC port with this certificate, and
    // --client-cert-auth checks it like any client's.
    let server = "keyUsage=digitalSignature\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth";
    pki::leaf(dir, "server", "/O=etcd", server);
    // No CommonName: with auth on, etcd 3.4's JSON gateway refuses a client certificate
    // that has one ("CommonName of client sending a request against gateway will be
    // ignored"); the user comes from credentials_file.
    pki::leaf(dir, "client", "/O=gslbd", "keyUsage=digitalSignature\nextendedKeyUsage=clientAuth");
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Turns on etcd's auth through member 0's gateway (still plain HTTP): a root user, and a
/// `gslbd` user whose role may read and write `prefix/` and nothing else.
fn enable_auth(etcd: &EtcdCluster, prefix: &str) {
    let dir = format!("{prefix}/");
    let mut end = dir.clone().into_bytes();
    *end.last_mut().unwrap() += 1;
    let end = String::from_utf8(end).unwrap();
    let calls = [
        ("/v3/auth/role/add", r#"{"name":"root"}"#.to_string()),
        ("/v3/auth/user/add", r#"{"name":"root","password":"root-pw"}"#.to_string()),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#.to_string()),
        ("/v3/auth/role/add", r#"{"name":"gslbd"}"#.to_string()),
        (
            "/v3/auth/role/grant",
            format!(
                r#"{{"name":"gslbd","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#,
                b64(&dir),
                b64(&end)
            ),
        ),
        ("/v3/auth/user/add", r#"{"name":"gslbd","password":"s3cret:with colon"}"#.to_string()),
        ("/v3/auth/user/grant", r#"{"user":"gslbd","role":"gslbd"}"#.to_string()),
        ("/v3/auth/enable", "{}".to_string()),
    ];
    for (path, body) in calls {
        let (code, text) = etcd.post(0, path, &body);
        assert_eq!(code, 200, "{path} {body}: {text}");
    }
}

fn first_address(s: &Server) -> String {
    first_a(&udp(s.dns, &query("failover.svc.test.", RecordType::A)))
}

fn cluster_status(s: &Server) -> serde_json::Value {
    json(&http(s.admin.unwrap(), "GET", "/v1/status", None, None).1)["cluster"].clone()
}

/// Waits up to `limit` for `check` on `s`'s cluster status.
fn until_status(s: &Server, what: &str, limit: Duration, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let v = cluster_status(s);
        if check(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not within {limit:?}: {v}\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn instances_join_an_etcd_with_tls_client_certificates_and_auth() {
    if !common::etcd::need_etcd() {
        return;
    }
    if Command::new("openssl").arg("version").output().is_err() {
        missing_tool("openssl");
        return;
    }
    let dir = TempDir::new("etcd-tls");
    let pki: PathBuf = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    make_pki(&pki);
    let prefix = format!("/sec{}", std::process::id());

    // Auth is set up over plain HTTP, then every member restarts with TLS on its client port.
    let mut etcd = EtcdCluster::start_with(3, dir, None);
    enable_auth(&etcd, &prefix);
    etcd.restart_all_with(Some(ServerTls {
        cert: pki.join("server.pem"),
        key: pki.join("server.key"),
        ca: pki.join("ca.pem"),
    }));
    let endpoints = etcd.endpoints();
    assert!(endpoints.iter().all(|e| e.starts_with("https://")), "{endpoints:?}");

    let cfg_dir = TempDir::new("cluster-tls-cfg");
    let p = |f: &str| format!("{:?}", pki.join(f));
    cfg_dir.write("etcd.auth", "gslbd:s3cret:with colon\n");
    cfg_dir.write("wrong.auth", "gslbd:not-the-password\n");
    let tls = format!(
        "tls_ca_file = {}\ntls_cert_file = {}\ntls_key_file = {}\n",
        p("ca.pem"),
        p("client.pem"),
        p("client.key")
    );
    let good = format!("{tls}credentials_file = \"etcd.auth\"\n");
    let servers: Vec<Server> = ["a", "b"]
        .iter()
        .map(|n| Server::start(&["--config", &gslb_config(&cfg_dir, n, &endpoints, &prefix, &good)]))
        .collect();
    for s in &servers {
        until_status(s, "joined over TLS with auth", Duration::from_secs(15), |v| {
            v["connected"] == true && v["members"].as_array().is_some_and(|m| m.len() == 2)
        });
        assert_eq!(first_address(s), US);
    }

    // A drain through A reaches B.
    let (code, body) = http(servers[0].admin.unwrap(), "POST", "/v1/regions/us-east/drain", Some(TOKEN), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(first_address(&servers[0]), EU);
    let start = Instant::now();
    while first_address(&servers[1]) != EU {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "B did not apply A's drain within 1 s:\n{}",
            servers[1].log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // The wrong password: never joins, says etcd refused it, keeps answering with what it has.
    let wrong = format!("{tls}credentials_file = \"wrong.auth\"\n");
    let c = Server::start(&["--config", &gslb_config(&cfg_dir, "c", &endpoints, &prefix, &wrong)]);
    // No client certificate: the TLS handshake is refused.
    let no_cert = format!("tls_ca_file = {}\ncredentials_file = \"etcd.auth\"\n", p("ca.pem"));
    let d = Server::start(&["--config", &gslb_config(&cfg_dir, "d", &endpoints, &prefix, &no_cert)]);
    // Not trusting etcd's CA (the system's roots): the server certificate is refused.
    let e = Server::start(&[
        "--config",
        &gslb_config(&cfg_dir, "e", &endpoints, &prefix, "credentials_file = \"etcd.auth\"\n"),
    ]);
    std::thread::sleep(Duration::from_secs(4));
    for (s, why) in [(&c, "authentication failed"), (&d, "certificate"), (&e, "certificate")] {
        let v = cluster_status(s);
        assert_eq!(v["connected"], false, "{v}");
        let log = s.log();
        assert!(log.to_lowercase().contains(why), "the log says {why:?}:\n{log}");
        // Not joined, still a nameserver: it answers from its own view (us-east first).
        assert_eq!(first_address(s), US, "{}", s.log());
    }
    // None of them showed up as a member to A.
    let v = cluster_status(&servers[0]);
    assert_eq!(v["members"].as_array().unwrap().len(), 2, "{v}");
}
