//! The answer algorithm as a table of cases over one small zone, checked as values (rcode,
//! AA, and what each section holds) without sockets.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::name::Name;
use crate::snapshot::{Settings, Snapshot};
use crate::wire::{Decoded, decode};
use crate::zone::{Zone, ZoneSet, parse};

const PARENT: &str = "
$ORIGIN ex.test.
$TTL 300
@        IN SOA ns1 host 1 3600 600 86400 60
@        IN NS  ns1
@        IN MX  10 mail
ns1      IN A   192.0.2.1
mail     IN A   192.0.2.25
www      IN A   192.0.2.10
www      IN AAAA 2001:db8::10
alias    IN CNAME www
loop1    IN CNAME loop2
loop2    IN CNAME loop1
out      IN CNAME elsewhere.example.
*.wild   IN TXT \"wild\"
a.b.c    IN A   192.0.2.30
sub      IN NS  ns.sub
ns.sub   IN A   192.0.2.53
child    IN NS  ns1.child
tochild  IN CNAME www.child
";

const CHILD: &str = "
$ORIGIN child.ex.test.
$TTL 120
@        IN SOA ns1 host 1 3600 600 86400 900
@        IN NS  ns1
ns1      IN A   192.0.2.60
www      IN A   192.0.2.61
";

fn zone(text: &str, apex: &str) -> Zone {
    let apex = Name::parse(apex, None).unwrap();
    let records = parse::parse_str(text, Path::new("t.zone"), &apex, Path::new("/nonexistent")).unwrap();
    Zone::from_records(&apex, records, Path::new("t.zone")).unwrap()
}

fn snapshot() -> Snapshot {
    Snapshot {
        zones: Arc::new(ZoneSet::new(vec![zone(PARENT, "ex.test."), zone(CHILD, "child.ex.test.")])),
        settings: Arc::new(Settings::default()),
        ..Default::default()
    }
}

fn packet(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(Name::parse(name, None).unwrap().as_wire());
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

/// One section as `owner type` strings (owner "?" = the question name).
fn section(rrs: &[PlacedRRset<'_>]) -> Vec<String> {
    rrs.iter()
        .map(|rr| {
            let owner = match rr.owner {
                Owner::Question => "?".to_string(),
                Owner::Name(n) => Name::from_wire(n).unwrap().to_string().to_lowercase(),
            };
            format!("{owner} {}", rtype::name(rr.rrset.rtype))
        })
        .collect()
}

struct Case {
    name: &'static str,
    qtype: u16,
    rcode: u16,
    aa: bool,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { name: "www.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? A"], authority: &[], additional: &[] },
    Case { name: "WWW.EX.TEST.", qtype: rtype::AAAA, rcode: rcode::NOERROR, aa: true, answer: &["? AAAA"], authority: &[], additional: &[] },
    Case { name: "www.ex.test.", qtype: rtype::MX, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "nope.ex.test.", qtype: rtype::A, rcode: rcode::NXDOMAIN, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "b.c.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "x.c.ex.test.", qtype: rtype::A, rcode: rcode::NXDOMAIN, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "ex.test.", qtype: rtype::MX, rcode: rcode::NOERROR, aa: true, answer: &["? MX"], authority: &[], additional: &["mail.ex.test. A"] },
    Case { name: "ex.test.", qtype: rtype::NS, rcode: rcode::NOERROR, aa: true, answer: &["? NS"], authority: &[], additional: &["ns1.ex.test. A"] },
    Case { name: "alias.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? CNAME", "www.ex.test. A"], authority: &[], additional: &[] },
    Case { name: "alias.ex.test.", qtype: rtype::CNAME, rcode: rcode::NOERROR, aa: true, answer: &["? CNAME"], authority: &[], additional: &[] },
    Case { name: "out.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? CNAME"], authority: &[], additional: &[] },
    // A CNAME loop ends after each link has been given once.
    Case { name: "loop1.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? CNAME", "loop2.ex.test. CNAME"], authority: &[], additional: &[] },
    Case { name: "x.y.wild.ex.test.", qtype: rtype::TXT, rcode: rcode::NOERROR, aa: true, answer: &["? TXT"], authority: &[], additional: &[] },
    Case { name: "x.wild.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "wild.ex.test.", qtype: rtype::TXT, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "deep.www.sub.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: false, answer: &[], authority: &["sub.ex.test. NS"], additional: &["ns.sub.ex.test. A"] },
    Case { name: "sub.ex.test.", qtype: rtype::NS, rcode: rcode::NOERROR, aa: false, answer: &[], authority: &["sub.ex.test. NS"], additional: &["ns.sub.ex.test. A"] },
    Case { name: "ns.sub.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: false, answer: &[], authority: &["sub.ex.test. NS"], additional: &["ns.sub.ex.test. A"] },
    Case { name: "sub.ex.test.", qtype: rtype::DS, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    // The served child answers for itself; DS at its apex comes from the parent.
    Case { name: "www.child.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? A"], authority: &[], additional: &[] },
    Case { name: "child.ex.test.", qtype: rtype::DS, rcode: rcode::NOERROR, aa: true, answer: &[], authority: &["ex.test. SOA"], additional: &[] },
    Case { name: "nope.child.ex.test.", qtype: rtype::A, rcode: rcode::NXDOMAIN, aa: true, answer: &[], authority: &["child.ex.test. SOA"], additional: &[] },
    Case { name: "tochild.ex.test.", qtype: rtype::A, rcode: rcode::NOERROR, aa: true, answer: &["? CNAME", "www.child.ex.test. A"], authority: &[], additional: &[] },
    Case { name: "ex.test.", qtype: rtype::ANY, rcode: rcode::NOERROR, aa: true, answer: &["? NS"], authority: &[], additional: &[] },
    Case { name: "www.ex.test.", qtype: rtype::ANY, rcode: rcode::NOERROR, aa: true, answer: &["? A"], authority: &[], additional: &[] },
    Case { name: "other.test.", qtype: rtype::A, rcode: rcode::REFUSED, aa: false, answer: &[], authority: &[], additional: &[] },
    Case { name: ".", qtype: rtype::NS, rcode: rcode::REFUSED, aa: false, answer: &[], authority: &[], additional: &[] },
];

#[test]
fn answers_follow_rfc_1034_4_3_2() {
    let snap = snapshot();
    for c in CASES {
        let p = packet(c.name, c.qtype);
        let Decoded::Query(q) = decode(&p) else { panic!("{}: not a query", c.name) };
        let a = answer(&q, "127.0.0.1".parse().unwrap(), &snap);
        let what = format!("{} {}", c.name, rtype::name(c.qtype));
        assert_eq!(a.rcode, c.rcode, "{what}: rcode");
        assert_eq!(a.aa, c.aa, "{what}: AA");
        assert_eq!(section(&a.answer), c.answer, "{what}: answer");
        assert_eq!(section(&a.authority), c.authority, "{what}: authority");
        assert_eq!(section(&a.additional), c.additional, "{what}: additional");
        assert_eq!(a.ecs_scope, 0, "{what}: static data does not depend on the client");
    }
}

#[test]
fn negative_soa_ttl_is_min_of_ttl_and_minimum() {
    let snap = snapshot();
    for (name, ttl) in [("nope.ex.test.", 60), ("nope.child.ex.test.", 120)] {
        let p = packet(name, rtype::A);
        let Decoded::Query(q) = decode(&p) else { panic!() };
        let a = answer(&q, "127.0.0.1".parse().unwrap(), &snap);
        assert_eq!(a.authority[0].rrset.ttl, ttl, "{name}");
    }
}

#[test]
fn zone_rejects_conflicts_and_missing_apex_data() {
    let apex = Name::parse("ex.test.", None).unwrap();
    let build = |text: &str| {
        let records = parse::parse_str(text, Path::new("t.zone"), &apex, Path::new("/nonexistent")).unwrap();
        Zone::from_records(&apex, records, Path::new("t.zone"))
            .map(|_| ())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };
    let head = "$ORIGIN ex.test.\n$TTL 300\n@ IN SOA ns1 host 1 3600 600 86400 60\n@ IN NS ns1\n";
    let e = build(&format!("{head}a IN A 192.0.2.1\na 60 IN A 192.0.2.2\n"));
    assert_eq!(
        e,
        [
            "t.zone:6:1: error: TTL 60 of A record at a.ex.test. differs from 300 of the same RRset (line 5); RFC 2181 section 5.2 wants one TTL per RRset"
        ]
    );
    let e = build(&format!("{head}c IN CNAME a\nc IN CNAME b\n"));
    assert_eq!(e, ["t.zone:5:1: error: c.ex.test. has more than one CNAME record"]);
    let e = build(&format!("{head}sub IN SOA ns1 host 1 3600 600 86400 60\n"));
    assert_eq!(e, ["t.zone:5:1: error: SOA record at sub.ex.test., not at the zone apex"]);
    let e = build("$ORIGIN ex.test.\n$TTL 300\n@ IN NS ns1\n");
    assert_eq!(e, ["t.zone: error: zone ex.test. has no SOA record at its apex"]);
    let e = build("$ORIGIN ex.test.\n$TTL 300\n@ IN SOA ns1 host 1 3600 600 86400 60\n");
    assert_eq!(e, ["t.zone: error: zone ex.test. has no NS records at its apex"]);
}
