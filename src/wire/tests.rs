use super::*;

/// A query for `name` (presentation form) with optional EDNS and raw OPT options.
pub(crate) fn query_packet(id: u16, name: &str, qtype: u16, edns: Option<(u16, &[u8])>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x0100u16.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    let n = crate::name::Name::parse(name, None).unwrap();
    p.extend_from_slice(n.as_wire());
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some((size, opts)) = edns {
        p.push(0);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        p.extend_from_slice(opts);
    }
    p
}

fn ecs_opt(data: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 8];
    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

fn error_rcode(p: &[u8]) -> u16 {
    match decode(p) {
        Decoded::Error(e) => e.rcode,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn decodes_a_plain_query_keeping_case() {
    let p = query_packet(7, "WwW.Example.COM.", 1, None);
    let Decoded::Query(q) = decode(&p) else { panic!("not a query") };
    assert_eq!(q.id, 7);
    assert!(q.rd);
    assert_eq!(q.qname, b"\x03WwW\x07Example\x03COM\x00");
    assert_eq!(q.qname_lower.as_wire(), b"\x03www\x07example\x03com\x00");
    assert_eq!((q.qtype, q.qclass), (1, 1));
    assert!(q.edns.is_none());
}

#[test]
fn drops_short_packets_and_responses() {
    assert!(matches!(decode(&[0u8; 11]), Decoded::Drop));
    let mut p = query_packet(1, "a.", 1, None);
    p[2] |= 0x80;
    assert!(matches!(decode(&p), Decoded::Drop));
}

#[test]
fn gates_answer_with_the_right_rcode() {
    let mut notify = query_packet(1, "a.", 6, None);
    notify[2] |= 4 << 3;
    assert_eq!(error_rcode(&notify), rcode::NOTIMP);
    let mut two = query_packet(1, "a.", 1, None);
    two[5] = 2;
    assert_eq!(error_rcode(&two), rcode::FORMERR);
    let mut zero = query_packet(1, "a.", 1, None);
    zero[5] = 0;
    assert_eq!(error_rcode(&zero), rcode::FORMERR);
    let truncated = &query_packet(1, "abc.", 1, None)[..15];
    assert_eq!(error_rcode(truncated), rcode::FORMERR);
    // RFC 9824 section 3.3: NXNAME as a question is FORMERR; other meta types NOTIMP.
    assert_eq!(error_rcode(&query_packet(1, "a.", 128, None)), rcode::FORMERR);
    assert_eq!(error_rcode(&query_packet(1, "a.", 129, None)), rcode::NOTIMP);
    let mut compressed = query_packet(1, "a.", 1, None);
    compressed.splice(12..15, [0xC0, 0x0C]);
    assert_eq!(error_rcode(&compressed), rcode::FORMERR);
}

#[test]
fn edns_version_above_zero_is_badvers() {
    let mut p = query_packet(1, "a.", 1, Some((1232, &[])));
    let ttl_at = p.len() - 6;
    p[ttl_at + 1] = 1;
    assert_eq!(error_rcode(&p), rcode::BADVERS);
}

#[test]
fn two_opt_records_are_formerr() {
    let mut p = query_packet(1, "a.", 1, Some((1232, &[])));
    let opt = p[p.len() - 11..].to_vec();
    p.extend_from_slice(&opt);
    p[11] = 2;
    assert_eq!(error_rcode(&p), rcode::FORMERR);
}

#[test]
fn client_subnet_is_parsed_and_validated() {
    let ok = ecs_opt(&[0, 1, 24, 0, 81, 2, 69]);
    let p = query_packet(1, "a.", 1, Some((1232, &ok)));
    let Decoded::Query(q) = decode(&p) else { panic!() };
    let cs = q.edns.unwrap().client_subnet.unwrap();
    assert_eq!(cs.addr, "81.2.69.0".parse::<IpAddr>().unwrap());
    assert_eq!((cs.source_prefix, cs.scope_prefix, cs.family()), (24, 0, 1));

    // (case, option data): every one is FORMERR per RFC 7871 section 6.
    let bad: &[(&str, &[u8])] = &[
        ("address too short", &[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x4a]),
        ("address too long", &[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x4a, 0x2f, 0x00]),
        ("bits past the prefix", &[0, 1, 20, 0, 81, 2, 69]),
        ("unknown family", &[0, 3, 8, 0, 1]),
        ("prefix too long", &[0, 1, 33, 0, 1, 2, 3, 4, 5]),
        ("truncated header", &[0, 1, 24]),
    ];
    for (case, data) in bad {
        let p = query_packet(1, "a.", 1, Some((1232, &ecs_opt(data))));
        assert_eq!(error_rcode(&p), rcode::FORMERR, "{case}");
    }
}

#[test]
fn unknown_options_are_ignored() {
    let p = query_packet(1, "a.", 1, Some((4096, &[0xff, 0x14, 0, 3, 0xc0, 0xff, 0xee])));
    let Decoded::Query(q) = decode(&p) else { panic!() };
    assert_eq!(q.edns.unwrap().udp_payload, 4096);
}

#[test]
fn size_limit_follows_rfc_6891() {
    let e = |size| Some(Edns { udp_payload: size, version: 0, dnssec_ok: false, client_subnet: None });
    assert_eq!(size_limit(None, false, 1232), 512);
    assert_eq!(size_limit(e(64).as_ref(), false, 1232), 512);
    assert_eq!(size_limit(e(4096).as_ref(), false, 1232), 1232);
    assert_eq!(size_limit(e(1000).as_ref(), false, 1232), 1000);
    assert_eq!(size_limit(None, true, 1232), 65535);
}

#[test]
fn decode_never_panics_on_mutations() {
    let base = query_packet(0x1234, "www.example.com.", 1, Some((1232, &ecs_opt(&[0, 1, 24, 0, 81, 2, 69]))));
    for i in 0..base.len() {
        for v in [0u8, 1, 0x3f, 0x40, 0xc0, 0xff] {
            let mut p = base.clone();
            p[i] = v;
            let _ = decode(&p);
            let _ = decode(&p[..i]);
        }
    }
}
