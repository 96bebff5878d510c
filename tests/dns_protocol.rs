//! The protocol behaviour of the authoritative core, each checked against the real binary
//! with a real client over loopback. Zones: tests/zones (pub.test. and its served child
//! kids.pub.test.).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

fn server() -> Server {
    Server::start(&["--zones", test_zones().to_str().unwrap()])
}

fn ask(s: &Server, name: &str, t: RecordType) -> Message {
    udp(s.dns, &with_edns(query(name, t), 1232, None))
}

#[test]
fn answers_carry_aa_copy_id_and_rd_and_clear_ra() {
    let s = server();
    let mut q = query("host.pub.test.", RecordType::A);
    q.metadata.recursion_desired = true;
    let r = udp(s.dns, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative, "AA");
    assert!(r.metadata.recursion_desired, "RD copied");
    assert!(!r.metadata.recursion_available, "RA clear");
    let q = query("host.pub.test.", RecordType::A);
    assert!(!udp(s.dns, &q).metadata.recursion_desired, "RD not invented");
}

#[test]
fn existing_rrset_with_zone_ttls() {
    let s = server();
    let r = ask(&s, "host.pub.test.", RecordType::A);
    assert_eq!(lines(&r.answers), ["host.pub.test. 120 A 203.0.113.20", "host.pub.test. 120 A 203.0.113.21"]);
    assert!(r.authorities.is_empty());
    let r = ask(&s, "notes.pub.test.", RecordType::TXT);
    assert_eq!(r.answers.len(), 2);
    let r = ask(&s, "_xmpp._tcp.pub.test.", RecordType::SRV);
    assert_eq!(r.answers.len(), 2);
    assert!(lines(&r.additionals).contains(&"chat.pub.test. 1800 A 203.0.113.40".to_string()));
    let r = ask(&s, "certs.pub.test.", RecordType::CAA);
    assert_eq!(r.answers.len(), 2);
    let r = ask(&s, "20.rev.pub.test.", RecordType::PTR);
    assert_eq!(lines(&r.answers), ["20.rev.pub.test. 1800 PTR host.pub.test."]);
}

#[test]
fn nxdomain_and_nodata_carry_soa_with_negative_ttl() {
    let s = server();
    let soa = "pub.test. 240 SOA dns1.pub.test. admin.pub.test. 2025031701 10800 1800 604800 240";
    let r = ask(&s, "absent.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert!(r.answers.is_empty());
    assert_eq!(lines(&r.authorities), [soa]);
    let r = ask(&s, "q.r.s.absent.pub.test.", RecordType::TXT);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let r = ask(&s, "onlyv4.pub.test.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(lines(&r.authorities), [soa]);
    // Empty non-terminal: NODATA, not NXDOMAIN (RFC 8020).
    let r = ask(&s, "branch.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lines(&r.authorities), [soa]);
    let r = ask(&s, "twig.branch.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // Child zone: SOA TTL 90 < MINIMUM 900.
    let r = ask(&s, "nobody.kids.pub.test.", RecordType::A);
    assert_eq!(r.authorities[0].ttl, 90);
}

#[test]
fn names_outside_every_zone_are_refused() {
    let s = server();
    for (name, t) in [
        ("example.org.", RecordType::A),
        ("test.", RecordType::NS),
        ("xpub.test.", RecordType::A),
        (".", RecordType::NS),
    ] {
        let r = ask(&s, name, t);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative, "{name}: AA clear");
        assert!(r.answers.is_empty() && r.authorities.is_empty(), "{name}: no referral to the root");
        assert_eq!(r.queries.len(), 1, "{name}: question echoed");
    }
}

#[test]
fn delegation_gives_referral_with_glue_and_aa_clear() {
    let s = server();
    for name in ["partner.pub.test.", "www.partner.pub.test.", "ns.partner.pub.test."] {
        let r = ask(&s, name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(!r.metadata.authoritative, "{name}: AA clear on a referral");
        assert!(r.answers.is_empty(), "{name}");
        assert_eq!(
            lines(&r.authorities),
            ["partner.pub.test. 43200 NS ns.example.org.", "partner.pub.test. 43200 NS ns.partner.pub.test."]
        );
        assert_eq!(
            lines(&r.additionals),
            ["ns.partner.pub.test. 43200 A 203.0.113.200", "ns.partner.pub.test. 43200 AAAA 2001:db8:7::200"]
        );
    }
    // DS at the cut is the parent's: NODATA, authoritative.
    let r = ask(&s, "partner.pub.test.", RecordType::DS);
    assert!(r.metadata.authoritative);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn cname_is_followed_inside_served_zones() {
    let s = server();
    let r = ask(&s, "hop1.pub.test.", RecordType::AAAA);
    assert_eq!(
        lines(&r.answers),
        [
            "hop1.pub.test. 2400 CNAME hop2.pub.test.",
            "hop2.pub.test. 2300 CNAME hop3.pub.test.",
            "hop3.pub.test. 2200 CNAME host.pub.test.",
            "host.pub.test. 240 AAAA 2001:db8:7::20",
        ]
    );
    // Asking for the CNAME itself does not follow it.
    let r = ask(&s, "link.pub.test.", RecordType::CNAME);
    assert_eq!(lines(&r.answers), ["link.pub.test. 2400 CNAME host.pub.test."]);
    // Outside every served zone: stop, the resolver follows.
    let r = ask(&s, "offsite.pub.test.", RecordType::A);
    assert_eq!(lines(&r.answers), ["offsite.pub.test. 2400 CNAME web.example.org."]);
    // A dangling target: NXDOMAIN with the CNAME (RFC 6604).
    let r = ask(&s, "broken.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // Into the served child zone.
    let r = ask(&s, "tokids.pub.test.", RecordType::A);
    assert_eq!(
        lines(&r.answers),
        ["app.kids.pub.test. 900 A 203.0.113.151", "tokids.pub.test. 2400 CNAME app.kids.pub.test."]
    );
}

#[test]
fn wildcards_follow_rfc_4592() {
    let s = server();
    let r = ask(&s, "anything.star.pub.test.", RecordType::A);
    assert_eq!(lines(&r.answers), ["anything.star.pub.test. 600 A 203.0.113.80"]);
    let r = ask(&s, "x.y.z.star.pub.test.", RecordType::AAAA);
    assert_eq!(lines(&r.answers), ["x.y.z.star.pub.test. 600 AAAA 2001:db8:7::80"]);
    let r = ask(&s, "anything.star.pub.test.", RecordType::MX);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    // Not at an existing name, nor below it.
    let r = ask(&s, "real.star.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    let r = ask(&s, "deeper.real.star.pub.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // A wildcard CNAME is synthesized at the question name and followed.
    let r = ask(&s, "node7.edge.pub.test.", RecordType::AAAA);
    assert_eq!(
        lines(&r.answers),
        ["host.pub.test. 240 AAAA 2001:db8:7::20", "node7.edge.pub.test. 600 CNAME host.pub.test."]
    );
}

#[test]
fn nested_zone_answers_from_the_child() {
    let s = server();
    let r = ask(&s, "kids.pub.test.", RecordType::SOA);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers[0].ttl, 90);
    let r = ask(&s, "kids.pub.test.", RecordType::NS);
    assert!(r.metadata.authoritative, "child apex NS is an answer, not a referral");
    assert_eq!(lines(&r.answers), ["kids.pub.test. 900 NS ns.kids.pub.test."]);
    let r = ask(&s, "app.kids.pub.test.", RecordType::AAAA);
    assert_eq!(lines(&r.answers), ["app.kids.pub.test. 900 AAAA 2001:db8:7::151"]);
    // DS for the child apex comes from the parent.
    let r = ask(&s, "kids.pub.test.", RecordType::DS);
    assert_eq!(r.authorities[0].name.to_ascii(), "pub.test.");
}

#[test]
fn edns_is_echoed_and_size_limits_truncate() {
    let s = server();
    let r = ask(&s, "host.pub.test.", RecordType::A);
    let e = r.edns.as_ref().expect("OPT echoed");
    assert_eq!(e.max_payload(), 1232);
    // ~880 octets: fits 1232, not 512.
    let r = ask(&s, "wide.pub.test.", RecordType::AAAA);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 30);
    for m in
        [query("wide.pub.test.", RecordType::AAAA), with_edns(query("wide.pub.test.", RecordType::AAAA), 512, None)]
    {
        let r = udp(s.dns, &m);
        assert!(r.metadata.truncation, "TC");
        assert!(r.answers.is_empty() && r.authorities.is_empty());
        assert_eq!(r.queries.len(), 1);
        assert_eq!(r.edns.is_some(), m.edns.is_some());
    }
    // Requester asks for 4096, we cap at 1232: ~2.4 kB is truncated over UDP, whole over TCP.
    let r = udp(s.dns, &with_edns(query("huge.pub.test.", RecordType::TXT), 4096, None));
    assert!(r.metadata.truncation);
    let r = &tcp(s.dns, &[with_edns(query("huge.pub.test.", RecordType::TXT), 4096, None)])[0];
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 32);
    // A payload below 512 counts as 512.
    let r = udp(s.dns, &with_edns(query("host.pub.test.", RecordType::A), 64, None));
    assert_eq!(r.answers.len(), 2);
}

#[test]
fn edns_version_one_gets_badvers_and_unknown_options_are_ignored() {
    let s = server();
    let mut m = with_edns(query("host.pub.test.", RecordType::A), 1232, None);
    m.edns.as_mut().unwrap().set_version(1);
    let r = udp(s.dns, &m);
    // Extended rcode 16 (hickory names it BADSIG: BADVERS and BADSIG share the number).
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS");
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    let mut m = with_edns(query("host.pub.test.", RecordType::A), 1232, None);
    m.edns.as_mut().unwrap().options_mut().insert(EdnsOption::Unknown(65300, vec![0xc0, 0xff, 0xee]));
    let r = udp(s.dns, &m);
    assert_eq!(r.answers.len(), 2);
    assert!(r.edns.as_ref().unwrap().option(EdnsCode::Unknown(65300)).is_none(), "not echoed");
}

#[test]
fn client_subnet_is_echoed_with_scope_zero_and_malformed_is_formerr() {
    let s = server();
    for (ecs, t) in [("100.64.10.0/24", RecordType::A), ("2001:db8:4a:2f00::/56", RecordType::AAAA)] {
        let r = udp(s.dns, &with_edns(query("host.pub.test.", t), 1232, Some(ecs)));
        let Some(EdnsOption::Subnet(cs)) = r.edns.as_ref().unwrap().option(EdnsCode::Subnet) else {
            panic!("{ecs}: ECS not echoed")
        };
        let (addr, prefix) = ecs.split_once('/').unwrap();
        assert_eq!(cs.addr(), addr.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(cs.source_prefix(), prefix.parse::<u8>().unwrap());
        assert_eq!(cs.scope_prefix(), 0, "static data does not depend on the client");
    }
    // Address octets not matching the source prefix: FORMERR (RFC 7871 section 6).
    let mut m = with_edns(query("host.pub.test.", RecordType::AAAA), 1232, None);
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(8, vec![0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0x4a]));
    assert_eq!(udp(s.dns, &m).metadata.response_code, ResponseCode::FormErr);
    // And dig's view of it.
    let out = dig(s.dns, &["host.pub.test", "A", "+subnet=81.2.69.0/24"]);
    assert!(out.contains("CLIENT-SUBNET: 81.2.69.0/24/0"), "{out}");
}

#[test]
fn other_opcodes_notimp_bad_counts_formerr_and_garbage_is_survived() {
    let s = server();
    let mut m = query("pub.test.", RecordType::SOA);
    m.metadata.op_code = OpCode::Status;
    assert_eq!(udp(s.dns, &m).metadata.response_code, ResponseCode::NotImp);
    let mut m = query("pub.test.", RecordType::SOA);
    m.metadata.op_code = OpCode::Update;
    assert_eq!(udp(s.dns, &m).metadata.response_code, ResponseCode::NotImp);

    let mut two = query("host.pub.test.", RecordType::A).to_bytes().unwrap();
    let q2 = two[12..].to_vec();
    two.extend_from_slice(&q2);
    two[5] = 2;
    let r = Message::from_vec(&udp_raw(s.dns, &two, Duration::from_secs(2)).expect("FORMERR")).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // Too short for a header, or a response: silence.
    assert!(udp_raw(s.dns, &[1, 2, 3, 4, 5], Duration::from_millis(300)).is_none());
    let mut resp = query("host.pub.test.", RecordType::A).to_bytes().unwrap();
    resp[2] |= 0x80;
    assert!(udp_raw(s.dns, &resp, Duration::from_millis(300)).is_none());
    // An HTTP request sent to the DNS port: FORMERR or NOTIMP, never a crash.
    let junk = b"GET / HTTP/1.1\r\nHost: pub.test\r\n\r\n";
    if let Some(raw) = udp_raw(s.dns, junk, Duration::from_millis(500)) {
        assert_eq!(&raw[..2], b"GE", "ID echoed");
    }
    // Still serving.
    assert_eq!(ask(&s, "host.pub.test.", RecordType::A).answers.len(), 2);
}

#[test]
fn any_over_udp_is_minimal() {
    let s = server();
    let r = ask(&s, "pub.test.", RecordType::ANY);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1, "one RRset (RFC 8482): {:?}", lines(&r.answers));
    let r = &tcp(s.dns, &[query("host.pub.test.", RecordType::ANY)])[0];
    let types: std::collections::BTreeSet<_> = r.answers.iter().map(|a| a.record_type()).collect();
    assert_eq!(types.len(), 1);
}

#[test]
fn any_over_udp_is_never_more_than_four_times_the_query() {
    // `mid` holds 300 bytes of TXT: within 512, so without the cap ANY over UDP would answer
    // it in full, about ten times the query.
    let dir = TempDir::new("any");
    let mut zone = String::from(
        "$ORIGIN amp.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 192.0.2.53\n",
    );
    for i in 0..4 {
        zone.push_str(&format!("mid IN TXT \"record {i} {}\"\n", "x".repeat(60)));
    }
    dir.write("amp.test.zone", &zone);
    let s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    // (name, answered in full over UDP?)
    let cases = [("amp.test.", true), ("ns.amp.test.", true), ("mid.amp.test.", false)];
    for (name, full) in cases {
        for edns in [false, true] {
            let q = query(name, RecordType::ANY);
            let q = if edns { with_edns(q, 4096, None) } else { q };
            let bytes = q.to_bytes().unwrap();
            let raw = udp_raw(s.dns, &bytes, Duration::from_secs(3)).expect("an answer");
            assert!(
                raw.len() <= 4 * bytes.len(),
                "{name} edns={edns}: {} bytes for a {}-byte query",
                raw.len(),
                bytes.len()
            );
            let r = Message::from_vec(&raw).unwrap();
            assert_eq!((r.metadata.truncation, !r.answers.is_empty()), (!full, full), "{name} edns={edns}");
        }
        // Over TCP, the whole RRset.
        let r = &tcp(s.dns, &[query(name, RecordType::ANY)])[0];
        assert!(!r.metadata.truncation && !r.answers.is_empty(), "{name} over TCP");
    }
    assert_eq!(tcp(s.dns, &[query("mid.amp.test.", RecordType::ANY)])[0].answers.len(), 4);
    // TXT asked by name is not capped: only ANY is.
    assert_eq!(udp(s.dns, &query("mid.amp.test.", RecordType::TXT)).answers.len(), 4);
}

#[test]
fn zone_transfer_refused_unless_allowed() {
    let s = server();
    let r = &tcp(s.dns, &[query("pub.test.", RecordType::AXFR)])[0];
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = ask(&s, "pub.test.", RecordType::IXFR);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);

    let dir = TempDir::new("axfr");
    let cfg = dir.write(
        "gslbd.toml",
        &format!(
            "[dns]\ntransfer_allow = [\"127.0.0.0/8\"]\n[zones]\ndirectory = {:?}\n",
            test_zones().to_str().unwrap()
        ),
    );
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let out = dig(s.dns, &["pub.test", "AXFR"]);
    let records: Vec<&str> = out.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).collect();
    assert!(records.first().is_some_and(|l| l.contains("\tSOA\t")), "{out}");
    assert!(records.last().is_some_and(|l| l.contains("\tSOA\t")), "{out}");
    // Every record of the zone file (106) and the closing SOA.
    assert_eq!(records.len(), 107, "{out}");
    assert!(out.contains("XFR size: 107 records"), "{out}");
}

#[test]
fn question_case_is_preserved() {
    let s = server();
    let r = ask(&s, "hOsT.pUb.TeSt.", RecordType::A);
    assert_eq!(r.queries[0].name().to_ascii(), "hOsT.pUb.TeSt.");
    // Found whatever the case (resolvers randomise it, 0x20), and answered in the query's case.
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.answers.is_empty(), "{r:?}");
    assert!(r.answers.iter().all(|a| a.name.to_ascii() == "hOsT.pUb.TeSt."));
    let r = ask(&s, "WWW.Partner.pub.TEST.", RecordType::A);
    assert_eq!(r.queries[0].name().to_ascii(), "WWW.Partner.pub.TEST.");
    assert!(!r.metadata.authoritative);
}

#[test]
fn tcp_pipelined_queries_are_answered_in_order() {
    let s = server();
    let msgs: Vec<Message> = ["host.pub.test.", "absent.pub.test.", "huge.pub.test.", "link.pub.test."]
        .iter()
        .map(|n| query(n, if n.starts_with("huge") { RecordType::TXT } else { RecordType::A }))
        .collect();
    let rs = tcp(s.dns, &msgs);
    for (m, r) in msgs.iter().zip(&rs) {
        assert_eq!(m.metadata.id, r.metadata.id);
        assert_eq!(m.queries[0].name(), r.queries[0].name());
    }
    assert_eq!(rs[1].metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(rs[2].answers.len(), 32);
}

#[test]
fn other_classes_are_refused() {
    let s = server();
    let mut m = query("host.pub.test.", RecordType::A);
    m.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(udp(s.dns, &m).metadata.response_code, ResponseCode::Refused);
}

#[test]
fn dig_sees_an_authoritative_answer() {
    let s = server();
    let out = dig(s.dns, &["host.pub.test", "A", "+norecurse"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(out.contains("host.pub.test.\t\t120\tIN\tA\t203.0.113.20"), "{out}");
    let out = dig(s.dns, &["+tcp", "absent.pub.test", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}
