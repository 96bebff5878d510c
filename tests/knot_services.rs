//! GSLB services answered as Knot answers the same records from a zone file: gslbd with
//! tests/knot_services/gslbd.toml (services of one region each, so every answer is fixed)
//! against knotd serving those answers as static records. See tests/knot_services/README.md.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{Record, RecordType};

/// knotd on a free loopback port, serving tests/knot_services/knot-zones; killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Knot {
    fn start() -> Option<Knot> {
        if Command::new("knotd").arg("--version").output().is_err() {
            missing_tool("knotd (Debian package knot)");
            return None;
        }
        let dir = TempDir::new("knot");
        let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/knot_services/knot-zones");
        // A port free for UDP and TCP at once.
        let port = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let conf = format!(
            "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    user: {user}\n    identity: \"\"\n    version: \"\"\n    nsid: \"\"\n    udp-max-payload: 1232\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             log:\n  - target: stderr\n    any: warning\n\
             database:\n    storage: \"{run}/db\"\n\
             template:\n  - id: default\n    storage: \"{zones}\"\n    file: \"%s.zone\"\n    zonefile-sync: -1\n    journal-content: none\n    semantic-checks: on\n\
             zone:\n  - domain: gslb.test.\n",
            run = dir.path().display(),
            user = user.trim(),
            zones = zones.display(),
        );
        let conf_path = dir.write("knot.conf", &conf);
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let knot = Knot { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), _dir: dir };
        let deadline = Instant::now() + WAIT;
        loop {
            let answered =
                udp_raw(knot.addr, &query("gslb.test.", RecordType::SOA).to_vec().unwrap(), Duration::from_millis(200));
            if answered.is_some() {
                return Some(knot);
            }
            assert!(Instant::now() < deadline, "knotd did not answer on {}", knot.addr);
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RRset as `owner ttl type rdata` lines, owner in lower case (only the question keeps
/// its case, and both servers keep it).
fn rrsets(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| format!("{} {} {} {}", r.name.to_ascii().to_lowercase(), r.ttl, r.record_type(), r.data))
        .collect()
}

/// What must agree: rcode, AA, ANSWER and AUTHORITY.
fn shape(m: &Message) -> (String, bool, BTreeSet<String>, BTreeSet<String>) {
    (format!("{:?}", m.metadata.response_code), m.metadata.authoritative, rrsets(&m.answers), rrsets(&m.authorities))
}

#[test]
fn services_answer_as_knot_answers_the_same_records() {
    let Some(knot) = Knot::start() else { return };
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/knot_services/gslbd.toml");
    let gslbd = Server::start(&["--config", cfg.to_str().unwrap()]);
    let names = [
        "v4only",
        "v6only",
        "dual",
        "cloud",
        "api.eu",
        "eu",
        "x.eu",
        "docs",
        "docs6",
        "chain",
        "tostatic",
        "tocloud",
        "x.wild",
        "a.b.wild",
        "x.any",
        "x.v4only",
        "a.b.v6only",
        "x.cloud",
        "nope",
        "static4",
        "V4Only",
    ];
    let types = [RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::MX, RecordType::TXT, RecordType::ANY];
    let mut failures = Vec::new();
    let mut cases = 0;
    for name in names {
        let qname = format!("{name}.gslb.test.");
        for qtype in types {
            for transport in ["udp", "tcp"] {
                let q = query(&qname, qtype);
                let ask = |addr| {
                    if transport == "udp" { udp(addr, &q) } else { tcp(addr, std::slice::from_ref(&q)).remove(0) }
                };
                let (k, g) = (shape(&ask(knot.addr)), shape(&ask(gslbd.dns)));
                cases += 1;
                let agrees = if qtype == RecordType::ANY {
                    // RFC 8482: one RRset of those the name owns is enough.
                    k.0 == g.0 && k.1 == g.1 && g.2.is_subset(&k.2) && g.2.is_empty() == k.2.is_empty() && k.3 == g.3
                } else {
                    k == g
                };
                if !agrees {
                    failures.push(format!("{qname} {qtype} over {transport}:\n  knot  {k:?}\n  gslbd {g:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cases} cases differ from Knot:\n{}", failures.len(), failures.join("\n"));
}
