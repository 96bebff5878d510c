//! DNSSEC end to end (issue 16): the real binary signs tests/dnssec/zones/sec.test.zone and
//! its GSLB services with keys `gslbd dnssec keygen` writes, and validators that are not
//! our code check the answers: BIND's `delv` and dnspython's `dns.dnssec.validate`
//! (tests/dnssec/validate.py). A chain from a parent signed by Knot, through unbound,
//! validates with the DS `gslbd dnssec ds` prints.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;

/// A copy of tests/dnssec (config and zone) with keys of these algorithms in keys/.
struct Setup {
    dir: TempDir,
    /// The DNSKEY line of each key, in the order made.
    dnskeys: Vec<String>,
}

impl Setup {
    fn new(algorithms: &[u8]) -> Setup {
        let dir = TempDir::new("dnssec");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dnssec");
        let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-city.mmdb");
        let cfg = std::fs::read_to_string(src.join("gslbd.toml")).unwrap();
        dir.write("gslbd.toml", &cfg.replace("../../geoip/test-city.mmdb", geoip.to_str().unwrap()));
        for zone in ["sec.test.zone", "plain.test.zone"] {
            dir.write(&format!("zones/{zone}"), &std::fs::read_to_string(src.join("zones").join(zone)).unwrap());
        }
        let mut setup = Setup { dir, dnskeys: Vec::new() };
        for &alg in algorithms {
            setup.keygen(alg);
        }
        setup
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("gslbd.toml")
    }

    fn keygen(&mut self, alg: u8) -> String {
        let out = Command::new(bin())
            .args(["dnssec", "keygen", "--key-directory", self.keys().to_str().unwrap(), "sec.test"])
            .args(["--algorithm", &alg.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.dnskeys.push(line.clone());
        line
    }

    fn start(&self) -> Server {
        Server::start(&["--config", self.config().to_str().unwrap()])
    }

    /// A file with the DNSKEY line of key `i`, for validate.py.
    fn anchor_line(&self, i: usize) -> PathBuf {
        self.dir.write(&format!("anchor-{i}.key"), &format!("{}\n", self.dnskeys[i]))
    }

    /// A delv trust-anchors file for key `i`.
    fn anchor_delv(&self, i: usize) -> PathBuf {
        self.dir.write(&format!("anchor-{i}.conf"), &delv_anchor(&self.dnskeys[i]))
    }
}

/// `trust-anchors { ZONE static-key 257 3 ALG "KEY"; };` from a DNSKEY line.
fn delv_anchor(dnskey_line: &str) -> String {
    let f: Vec<&str> = dnskey_line.split_whitespace().collect();
    format!("trust-anchors {{ {} static-key {} {} {} \"{}\"; }};\n", f[0], f[4], f[5], f[6], f[7..].concat())
}

fn delv(server: SocketAddr, anchor: &Path, root: &str, source: Option<&str>, name: &str, qtype: &str) -> String {
    let mut cmd = Command::new("delv");
    cmd.arg("-a").arg(anchor).arg(format!("+root={root}"));
    cmd.args([&format!("@{}", server.ip()), "-p", &server.port().to_string()]);
    if let Some(src) = source {
        cmd.args(["-b", src]);
    }
    let out = cmd.args([name, qtype]).output().expect("delv is installed (bind9-dnsutils)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn have_tools() -> bool {
    let delv = Command::new("delv").arg("-v").output().is_ok();
    let dnspython = Command::new("python3")
        .args(["-c", "import dns._features as f, sys; sys.exit(0 if f.have('dnssec') else 1)"])
        .status()
        .is_ok_and(|s| s.success());
    if !delv || !dnspython {
        missing_tool("delv (bind9-dnsutils) and dnspython with cryptography >= 50");
        return false;
    }
    true
}

/// What delv must print for a case.
#[derive(Clone, Copy)]
enum Want {
    /// "; fully validated" and these records (owner type rdata substring).
    Positive(&'static str),
    /// "; negative response, fully validated"
    Negative,
}

/// Runs every case through delv; returns the failures.
fn delv_corpus(server: SocketAddr, anchor: &Path, cases: &[(Option<&str>, &str, &str, Want)]) -> Vec<String> {
    let mut failures = Vec::new();
    for &(source, name, qtype, want) in cases {
        let out = delv(server, anchor, "sec.test", source, name, qtype);
        let ok = match want {
            Want::Positive(needle) => {
                out.lines().any(|l| l == "; fully validated") && out.contains(needle) && out.contains("RRSIG")
            }
            Want::Negative => out.contains("; negative response, fully validated"),
        };
        if !ok {
            failures.push(format!("delv {name} {qtype} (from {source:?}):\n{out}"));
        }
    }
    failures
}

/// Runs validate.py over a corpus; returns its report and whether every case passed.
fn dnspython(server: SocketAddr, anchor_line: &Path, corpus: &str, dir: &TempDir) -> (String, bool) {
    let corpus_file = dir.write("corpus.json", corpus);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dnssec/validate.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.port().to_string())
        .arg(anchor_line)
        .arg(&corpus_file)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (report, out.status.success())
}

/// The delv corpus: (source address, name, type, what delv must say). Sources 127.0.0.1
/// and 127.0.0.2 are steered by geo.sec.test's `nets` (eu-west, ap-south).
const DELV_CASES: &[(Option<&str>, &str, &str, Want)] = &[
    (None, "sec.test", "SOA", Want::Positive("SOA\tns1.sec.test.")),
    (None, "sec.test", "NS", Want::Positive("NS\tns1.sec.test.")),
    (None, "sec.test", "DNSKEY", Want::Positive("DNSKEY\t257 3 13")),
    (None, "sec.test", "MX", Want::Positive("MX\t10 mail.sec.test.")),
    (None, "sec.test", "TXT", Want::Positive("\"signed by gslbd\"")),
    (None, "static.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (None, "static.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::1")),
    (None, "mail.sec.test", "A", Want::Positive("A\t192.0.2.25")),
    // GSLB answers, one per policy.
    (None, "www.sec.test", "A", Want::Positive("www.sec.test.\t\t20\tIN\tA\t192.0.2.1")),
    (None, "www.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::1")),
    (None, "fo.sec.test", "A", Want::Positive("A\t192.0.2.13")),
    (None, "fo.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::12")),
    (None, "multi.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (None, "sticky.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (None, "near.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (Some("127.0.0.1"), "geo.sec.test", "A", Want::Positive("A\t192.0.2.12")),
    (Some("127.0.0.2"), "geo.sec.test", "A", Want::Positive("A\t192.0.2.13")),
    (Some("127.0.0.1"), "geo.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::12")),
    (None, "lat.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (None, "shed.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    (None, "least.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::1")),
    (None, "multi.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::1")),
    (Some("127.0.0.2"), "sticky.sec.test", "AAAA", Want::Positive("AAAA\t2001:db8::1")),
    (Some("127.0.0.2"), "near.sec.test", "A", Want::Positive("A\t192.0.2.1")),
    // A region that is a hostname: CNAME to a static name, followed.
    (None, "cloud.sec.test", "A", Want::Positive("CNAME\tlb.sec.test.")),
    // A static CNAME to a service name.
    (None, "docs.sec.test", "A", Want::Positive("CNAME\twww.sec.test.")),
    // Denials: NXDOMAIN (compact: NOERROR + NSEC), NODATA, empty non-terminals.
    (None, "nx.sec.test", "A", Want::Negative),
    (None, "a.b.c.nx.sec.test", "AAAA", Want::Negative),
    (None, "static.sec.test", "TXT", Want::Negative),
    (None, "www.sec.test", "TXT", Want::Negative),
    (None, "ent.sec.test", "A", Want::Negative),
    (None, "b.ent.sec.test", "TXT", Want::Negative),
    // A CNAME to a name that does not exist: the CNAME validates, the target is denied.
    (None, "nowhere.sec.test", "A", Want::Positive("CNAME\tmissing.sec.test.")),
    // Wildcards: synthesized answers, and NODATA at a synthesized name.
    (None, "x.wild.sec.test", "A", Want::Positive("x.wild.sec.test.\t300\tIN\tA\t192.0.2.7")),
    (None, "Y.Z.wild.sec.test", "TXT", Want::Positive("\"wildcard\"")),
    (None, "x.wild.sec.test", "MX", Want::Negative),
    // Delegations: DS where there is one, its absence proven where there is none.
    (None, "secure.sec.test", "DS", Want::Positive("DS\t12345 13 2")),
    (None, "unsigned.sec.test", "DS", Want::Negative),
    // Mixed case: the answer keeps it, the signature is over the canonical form.
    (None, "MiXeD.SeC.TeSt", "A", Want::Positive("MiXeD.SeC.TeSt.\t\t300\tIN\tA\t192.0.2.2")),
    (None, "WwW.sec.TEST", "A", Want::Positive("A\t192.0.2.1")),
    (None, "NX.Sec.Test", "A", Want::Negative),
    // Too large for UDP: TC, then TCP.
    (None, "big.sec.test", "TXT", Want::Positive("chunk11-")),
];

/// The dnspython corpus (see validate.py): ECS steering included, which delv cannot send.
const DNSPYTHON_CASES: &str = r#"[
 {"name": "sec.test.", "type": "SOA", "expect": "positive"},
 {"name": "sec.test.", "type": "NS", "expect": "positive"},
 {"name": "static.sec.test.", "type": "A", "expect": "positive", "addr": "192.0.2.1"},
 {"name": "StAtIc.sec.test.", "type": "AAAA", "expect": "positive", "addr": "2001:db8::1"},
 {"name": "www.sec.test.", "type": "A", "expect": "positive"},
 {"name": "fo.sec.test.", "type": "A", "expect": "positive", "addr": "192.0.2.13"},
 {"name": "multi.sec.test.", "type": "AAAA", "expect": "positive"},
 {"name": "sticky.sec.test.", "type": "A", "expect": "positive", "ecs": "81.2.69.0/24"},
 {"name": "near.sec.test.", "type": "A", "expect": "positive", "ecs": "81.2.69.0/24", "addr": "192.0.2.12"},
 {"name": "near.sec.test.", "type": "A", "expect": "positive", "ecs": "175.16.199.0/24", "addr": "192.0.2.13"},
 {"name": "geo.sec.test.", "type": "A", "expect": "positive", "ecs": "81.2.69.0/24", "addr": "192.0.2.12"},
 {"name": "geo.sec.test.", "type": "A", "expect": "positive", "ecs": "175.16.199.0/24", "addr": "192.0.2.13"},
 {"name": "geo.sec.test.", "type": "A", "expect": "positive", "ecs": "2001:480::/32", "addr": "192.0.2.11"},
 {"name": "GEO.Sec.Test.", "type": "AAAA", "expect": "positive", "ecs": "81.2.69.0/24", "addr": "2001:db8::12"},
 {"name": "lat.sec.test.", "type": "A", "expect": "positive", "ecs": "81.2.69.0/24"},
 {"name": "shed.sec.test.", "type": "A", "expect": "positive"},
 {"name": "least.sec.test.", "type": "AAAA", "expect": "positive", "ecs": "175.16.199.0/24"},
 {"name": "sticky.sec.test.", "type": "AAAA", "expect": "positive", "ecs": "2001:480::/32"},
 {"name": "multi.sec.test.", "type": "A", "expect": "positive", "ecs": "81.2.69.0/24"},
 {"name": "fo.sec.test.", "type": "AAAA", "expect": "positive", "addr": "2001:db8::12"},
 {"name": "mail.sec.test.", "type": "A", "expect": "positive", "addr": "192.0.2.25"},
 {"name": "sec.test.", "type": "DNSKEY", "expect": "positive"},
 {"name": "sec.test.", "type": "MX", "expect": "positive"},
 {"name": "Y.Z.Wild.Sec.Test.", "type": "TXT", "expect": "positive"},
 {"name": "cloud.sec.test.", "type": "A", "expect": "positive", "addr": "192.0.2.30"},
 {"name": "cloud.sec.test.", "type": "CNAME", "expect": "positive"},
 {"name": "docs.sec.test.", "type": "A", "expect": "positive"},
 {"name": "nx.sec.test.", "type": "A", "expect": "nxdomain"},
 {"name": "Deep.NX.sec.test.", "type": "TXT", "expect": "nxdomain"},
 {"name": "nowhere.sec.test.", "type": "A", "expect": "nxdomain"},
 {"name": "static.sec.test.", "type": "TXT", "expect": "nodata"},
 {"name": "www.sec.test.", "type": "MX", "expect": "nodata"},
 {"name": "ent.sec.test.", "type": "A", "expect": "nodata"},
 {"name": "b.ent.sec.test.", "type": "A", "expect": "nodata"},
 {"name": "x.wild.sec.test.", "type": "A", "expect": "positive", "addr": "192.0.2.7"},
 {"name": "x.wild.sec.test.", "type": "MX", "expect": "nodata"},
 {"name": "secure.sec.test.", "type": "DS", "expect": "positive"},
 {"name": "unsigned.sec.test.", "type": "DS", "expect": "nodata"},
 {"name": "host.unsigned.sec.test.", "type": "A", "expect": "referral"},
 {"name": "host.secure.sec.test.", "type": "A", "expect": "referral", "ds": true},
 {"name": "big.sec.test.", "type": "TXT", "expect": "positive", "tcp": true}
]"#;

#[test]
fn delv_and_dnspython_validate_signed_answers() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(&[13]);
    let server = setup.start();
    let anchor = setup.anchor_delv(0);
    let failures = delv_corpus(server.dns, &anchor, DELV_CASES);
    assert!(
        failures.is_empty(),
        "{} of {} delv cases failed:\n{}",
        failures.len(),
        DELV_CASES.len(),
        failures.join("\n")
    );
    let (report, ok) = dnspython(server.dns, &setup.anchor_line(0), DNSPYTHON_CASES, &setup.dir);
    assert!(ok, "dnspython:\n{report}");
    let passed = report.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, DNSPYTHON_CASES.matches("\"name\"").count(), "{report}");
    eprintln!("delv: {} cases fully validated; dnspython: {passed} cases validated", DELV_CASES.len());
}

#[test]
fn two_published_keys_sign_everything_and_either_anchor_validates() {
    if !have_tools() {
        return;
    }
    // A rollover in progress: an ECDSA key and an Ed25519 key published at once.
    let setup = Setup::new(&[13, 15]);
    let server = setup.start();
    let cases: &[(Option<&str>, &str, &str, Want)] = &[
        (None, "sec.test", "DNSKEY", Want::Positive("DNSKEY\t257 3 15")),
        (None, "www.sec.test", "A", Want::Positive("A\t192.0.2.1")),
        (None, "nx.sec.test", "A", Want::Negative),
    ];
    for i in 0..2 {
        let failures = delv_corpus(server.dns, &setup.anchor_delv(i), cases);
        assert!(failures.is_empty(), "anchor {i}:\n{}", failures.join("\n"));
        let (report, ok) = dnspython(
            server.dns,
            &setup.anchor_line(i),
            r#"[{"name": "www.sec.test.", "type": "A", "expect": "positive"},
                {"name": "nx.sec.test.", "type": "A", "expect": "nxdomain"}]"#,
            &setup.dir,
        );
        assert!(ok, "anchor {i}: {report}");
    }
    // Two RRSIGs per RRset, one per key.
    let r = udp(server.dns, &with_dnssec(query("static.sec.test.", RecordType::A)));
    let sigs = r.answers.iter().filter(|a| a.record_type() == RecordType::RRSIG).count();
    assert_eq!(sigs, 2, "{r:?}");
    // Counted: the validators' queries made some fresh, repeated ones came from the cache.
    let (_, metrics) = http(server.admin.unwrap(), "GET", "/metrics", None, None);
    let count = |result: &str| -> u64 {
        let prefix = format!("gslbd_dnssec_signatures_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count("fresh") > 0 && count("cached") > 0, "{metrics}");
    assert_eq!(count("refused"), 0);
}

fn with_dnssec(m: hickory_proto::op::Message) -> hickory_proto::op::Message {
    let mut m = with_edns(m, 1232, None);
    m.edns.as_mut().unwrap().set_dnssec_ok(true);
    m
}

#[test]
fn answers_without_do_are_byte_for_byte_those_of_an_unsigned_server() {
    let setup = Setup::new(&[13]);
    let signed = setup.start();
    let plain_cfg =
        std::fs::read_to_string(setup.config()).unwrap().replace("[dnssec]\nkey_directory = \"keys\"\n", "");
    let plain_path = setup.dir.write("plain.toml", &plain_cfg);
    let plain = Server::start(&["--config", plain_path.to_str().unwrap()]);
    let names = [
        ("sec.test.", RecordType::SOA),
        ("static.sec.test.", RecordType::A),
        ("StAtIc.sec.test.", RecordType::AAAA),
        ("fo.sec.test.", RecordType::A),
        ("near.sec.test.", RecordType::A),
        ("cloud.sec.test.", RecordType::A),
        ("nx.sec.test.", RecordType::A),
        ("static.sec.test.", RecordType::TXT),
        ("x.wild.sec.test.", RecordType::A),
        ("host.secure.sec.test.", RecordType::A),
        ("big.sec.test.", RecordType::TXT),
    ];
    for (name, qtype) in names {
        for edns in [false, true] {
            let mut m = query(name, qtype);
            if edns {
                m = with_edns(m, 1232, Some("81.2.69.0/24"));
            }
            let bytes = m.to_bytes().unwrap();
            let a = udp_raw(signed.dns, &bytes, WAIT).unwrap();
            let b = udp_raw(plain.dns, &bytes, WAIT).unwrap();
            assert_eq!(a, b, "{name} {qtype:?} edns={edns}");
        }
    }
}

#[test]
fn a_chain_into_an_unsigned_zone_keeps_its_signed_part() {
    let setup = Setup::new(&[13]);
    let server = setup.start();
    for (name, rcode) in [("out.sec.test.", ResponseCode::NXDomain), ("out2.sec.test.", ResponseCode::NoError)] {
        let r = udp(server.dns, &with_dnssec(query(name, RecordType::A)));
        assert_eq!(r.metadata.response_code, rcode, "{name}: the unsigned zone's rcode, not compact denial");
        let types: Vec<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
        assert_eq!(types[..2], [RecordType::CNAME, RecordType::RRSIG], "{name}: {r:?}");
        assert_eq!(types.iter().filter(|t| **t == RecordType::RRSIG).count(), 1, "{name}: only sec.test. signs");
        assert!(r.authorities.iter().all(|a| a.record_type() != RecordType::NSEC), "{name}");
    }
}

#[test]
fn a_signed_child_served_beside_its_signed_parent_validates_through_the_ds() {
    if !have_tools() {
        return;
    }
    // kid.sec.test. is a zone of its own on the same server, delegated from sec.test. with
    // the DS of its key: delv trusts only sec.test.'s key.
    let setup = Setup::new(&[13]);
    let out = Command::new(bin())
        .args(["dnssec", "keygen", "--key-directory", setup.keys().to_str().unwrap(), "kid.sec.test"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ds = Command::new(bin())
        .args(["dnssec", "ds", "--key-directory", setup.keys().to_str().unwrap(), "kid.sec.test"])
        .output()
        .unwrap();
    let ds = String::from_utf8(ds.stdout).unwrap();
    let parent = std::fs::read_to_string(setup.dir.path().join("zones/sec.test.zone")).unwrap();
    setup.dir.write("zones/sec.test.zone", &format!("{parent}kid IN NS ns1.sec.test.\n{ds}"));
    setup.dir.write(
        "zones/kid.sec.test.zone",
        "$ORIGIN kid.sec.test.\n$TTL 300\n@ 3600 IN SOA ns1.sec.test. hostmaster.sec.test. 1 3600 600 604800 60\n@ 3600 IN NS ns1.sec.test.\nhost IN A 192.0.2.90\n",
    );
    let server = setup.start();
    let cases: &[(Option<&str>, &str, &str, Want)] = &[
        (None, "kid.sec.test", "DS", Want::Positive("DS\t")),
        (None, "kid.sec.test", "DNSKEY", Want::Positive("DNSKEY\t257 3 13")),
        (None, "host.kid.sec.test", "A", Want::Positive("A\t192.0.2.90")),
        (None, "nx.kid.sec.test", "A", Want::Negative),
    ];
    let failures = delv_corpus(server.dns, &setup.anchor_delv(0), cases);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn referrals_sign_the_ds_or_its_denial_but_never_ns_or_glue() {
    let setup = Setup::new(&[13]);
    let server = setup.start();
    let kinds = |r: &hickory_proto::op::Message| -> (Vec<String>, Vec<String>) {
        let show = |rrs: &[hickory_proto::rr::Record]| {
            rrs.iter()
                .filter(|a| a.record_type() != RecordType::OPT)
                .map(|a| match a.record_type() {
                    RecordType::RRSIG => {
                        // hickory without its dnssec feature: the rdata as bytes, type covered first.
                        let rd = a.data.to_bytes().unwrap();
                        let covered = RecordType::from(u16::from_be_bytes([rd[0], rd[1]]));
                        format!("{} RRSIG({covered:?})", a.name.to_lowercase())
                    }
                    t => format!("{} {t:?}", a.name.to_lowercase()),
                })
                .collect::<Vec<_>>()
        };
        (show(&r.authorities), show(&r.additionals))
    };
    let r = udp(server.dns, &with_dnssec(query("host.secure.sec.test.", RecordType::A)));
    assert!(!r.metadata.authoritative);
    assert_eq!(
        kinds(&r),
        (
            vec!["secure.sec.test. NS".into(), "secure.sec.test. DS".into(), "secure.sec.test. RRSIG(DS)".into()],
            vec!["ns.secure.sec.test. A".into()]
        )
    );
    let r = udp(server.dns, &with_dnssec(query("host.unsigned.sec.test.", RecordType::A)));
    assert_eq!(
        kinds(&r),
        (
            vec![
                "unsigned.sec.test. NS".into(),
                "unsigned.sec.test. NSEC".into(),
                "unsigned.sec.test. RRSIG(NSEC)".into()
            ],
            vec!["ns.unsigned.sec.test. A".into()]
        )
    );
}

#[test]
fn nxname_question_is_formerr() {
    let setup = Setup::new(&[13]);
    let server = setup.start();
    let r = udp(server.dns, &with_dnssec(query("nx.sec.test.", RecordType::Unknown(128))));
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn unreadable_key_on_reload_keeps_the_old_keys_signing() {
    if !have_tools() {
        return;
    }
    let mut setup = Setup::new(&[13]);
    let server = setup.start();
    // A second good key, and a broken one: the reload is refused as a whole.
    setup.keygen(13);
    std::fs::write(setup.keys().join("Ksec.test.+013+00001.private"), "Private-key-format: gslbd-pkcs8-v1\n").unwrap();
    server.signal("HUP");
    server.wait_log("Ksec.test.+013+00001.private");
    let r = udp(server.dns, &with_dnssec(query("sec.test.", RecordType::DNSKEY)));
    assert_eq!(r.answers.iter().filter(|a| a.record_type() == RecordType::DNSKEY).count(), 1, "old key set kept");
    assert!(
        delv_corpus(server.dns, &setup.anchor_delv(0), &[(None, "www.sec.test", "A", Want::Positive("A\t"))])
            .is_empty()
    );
    // Fixed: the reload brings in the second key.
    std::fs::remove_file(setup.keys().join("Ksec.test.+013+00001.private")).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = udp(server.dns, &with_dnssec(query("sec.test.", RecordType::DNSKEY)));
        if r.answers.iter().filter(|a| a.record_type() == RecordType::DNSKEY).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "second key not published after reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        delv_corpus(server.dns, &setup.anchor_delv(1), &[(None, "www.sec.test", "A", Want::Positive("A\t"))])
            .is_empty()
    );
}

#[test]
fn keygen_and_ds_commands() {
    let setup = Setup::new(&[13, 15]);
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    assert_eq!(mode(&setup.keys()), 0o700);
    for entry in std::fs::read_dir(setup.keys()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "private") {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    let out = Command::new(bin())
        .args(["dnssec", "ds", "--key-directory", setup.keys().to_str().unwrap(), "sec.test."])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, alg) in lines.iter().zip(["13", "15"]) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&f[..4], ["sec.test.", "3600", "IN", "DS"], "{line}");
        assert_eq!((f[5], f[6], f[7].len()), (alg, "2", 64), "{line}");
    }
    // `gslbd check` counts the signed zones (sec.test. of the two).
    let out = Command::new(bin()).args(["check", "--config", setup.config().to_str().unwrap()]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 2 zones, 37 records, 10 services, 4 regions, 1 signed"
    );
    // No key: exit 2 with a message.
    let out = Command::new(bin())
        .args(["dnssec", "ds", "--key-directory", setup.keys().to_str().unwrap(), "other.test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A port free for UDP and TCP at once.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_answer(addr: SocketAddr, name: &str) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut q = with_dnssec(query(name, RecordType::DNSKEY));
        q.metadata.recursion_desired = true;
        let q = q.to_bytes().unwrap();
        if let Some(raw) = udp_raw(addr, &q, Duration::from_millis(200))
            && hickory_proto::op::Message::from_bytes(&raw)
                .is_ok_and(|m| m.answers.iter().any(|a| a.record_type() == RecordType::RRSIG))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

use hickory_proto::serialize::binary::BinDecodable as _;

#[test]
fn chain_from_a_knot_signed_parent_validates_through_delv() {
    if !have_tools() {
        return;
    }
    for tool in ["knotd", "keymgr", "unbound"] {
        if Command::new("which").arg(tool).output().map_or(true, |o| !o.status.success()) {
            missing_tool(&format!("{tool} (Debian packages knot, unbound)"));
            return;
        }
    }
    let setup = Setup::new(&[13]);
    let gslbd = setup.start();
    let ds = Command::new(bin())
        .args(["dnssec", "ds", "--key-directory", setup.keys().to_str().unwrap(), "sec.test"])
        .output()
        .unwrap();
    let ds = String::from_utf8(ds.stdout).unwrap();

    // The parent, test., signed by Knot's automatic signing, delegating sec.test. to gslbd
    // with the DS we printed.
    let knot_dir = TempDir::new("knot-parent");
    let knot_port = free_port();
    knot_dir.write(
        "zones/test.zone",
        &format!(
            "$ORIGIN test.\n$TTL 300\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 604800 60\n@ IN NS ns.test.\nns IN A 127.0.0.1\nsec IN NS ns1.sec.test.\nns1.sec IN A 127.0.0.1\n{ds}"
        ),
    );
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let conf = format!(
        "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{knot_port}\n    user: {user}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: warning\n\
         database:\n    storage: \"{run}/db\"\n\
         policy:\n  - id: csk\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n\
         zone:\n  - domain: test.\n    storage: \"{run}/zones\"\n    file: \"%s.zone\"\n    zonefile-sync: -1\n    dnssec-signing: on\n    dnssec-policy: csk\n",
        run = knot_dir.path().display(),
        user = user.trim(),
    );
    let conf_path = knot_dir.write("knot.conf", &conf);
    std::fs::create_dir_all(knot_dir.path().join("db")).unwrap();
    let _knot = KillOnDrop(
        Command::new("knotd").arg("-c").arg(&conf_path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let knot = SocketAddr::from(([127, 0, 0, 1], knot_port));
    assert!(wait_answer(knot, "test."), "knotd did not serve test. signed");
    // The parent's trust anchor: its DNSKEY as Knot publishes it.
    let parent_key = dig(knot, &["+short", "test.", "DNSKEY"]);
    let parent_key = parent_key.lines().find(|l| l.starts_with("257 ")).expect("Knot's CSK").to_string();

    // A resolver that knows where each zone is served, as the root and TLD would tell it.
    let unbound_port = free_port();
    let unbound_dir = TempDir::new("unbound");
    let anchor = unbound_dir.write("test.anchor", &format!("test. 3600 IN DNSKEY {parent_key}\n"));
    let uconf = unbound_dir.write(
        "unbound.conf",
        &format!(
            "server:\n  interface: 127.0.0.1\n  port: {unbound_port}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"{dir}/unbound.log\"\n  do-not-query-localhost: no\n  do-ip6: no\n  trust-anchor-file: \"{anchor}\"\n  val-log-level: 2\n  verbosity: 1\n  local-zone: \"test.\" nodefault\n\
             stub-zone:\n  name: \"test.\"\n  stub-addr: 127.0.0.1@{knot_port}\n\
             stub-zone:\n  name: \"sec.test.\"\n  stub-addr: 127.0.0.1@{gport}\n",
            dir = unbound_dir.path().display(),
            anchor = anchor.display(),
            gport = gslbd.dns.port(),
        ),
    );
    let _unbound = KillOnDrop(
        Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&uconf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let resolver = SocketAddr::from(([127, 0, 0, 1], unbound_port));
    let log = |name: &str| std::fs::read_to_string(unbound_dir.path().join(name)).unwrap_or_default();
    assert!(wait_answer(resolver, "sec.test."), "unbound did not resolve sec.test. DNSKEY:\n{}", log("unbound.log"));

    // delv trusts only the parent's key: sec.test. validates through the DS Knot signed.
    let ta = unbound_dir.write("delv.anchor", &delv_anchor(&format!("test. 3600 IN DNSKEY {parent_key}")));
    let mut failures = Vec::new();
    for (name, qtype, needle) in [
        ("www.sec.test", "A", "A\t192.0.2.1"),
        ("static.sec.test", "AAAA", "AAAA\t2001:db8::1"),
        ("cloud.sec.test", "A", "CNAME\tlb.sec.test."),
        ("sec.test", "DNSKEY", "DNSKEY\t257 3 13"),
    ] {
        let out = delv(resolver, &ta, "test", None, name, qtype);
        if !(out.lines().any(|l| l == "; fully validated") && out.contains(needle)) {
            failures.push(format!("{name} {qtype}:\n{out}"));
        }
    }
    let out = delv(resolver, &ta, "test", None, "nx.sec.test", "A");
    if !out.contains("; negative response, fully validated") {
        failures.push(format!("nx.sec.test A:\n{out}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
