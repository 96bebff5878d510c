//! GSLB services end to end: the real binary with tests/gslb/gslbd.toml, queried over UDP
//! (with and without EDNS Client Subnet) and checked for the regions chosen, the record
//! types, TTLs and the ECS scope.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

fn server() -> Server {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml");
    Server::start(&["--config", cfg.to_str().unwrap()])
}

fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn scope(m: &Message) -> Option<u8> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(cs) => Some(cs.scope_prefix()),
        _ => None,
    }
}

/// Sends `n` queries built by `make(i)` from one socket, many in flight at a time, and
/// returns the first address of each answer (as sent, not sorted: the region that leads
/// it), in the order of the queries; "none" for an answer without one.
fn first_addresses(server: SocketAddr, n: usize, make: impl Fn(usize) -> Message) -> Vec<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut firsts = vec![String::new(); n];
    let mut buf = [0u8; 4096];
    let window = 64;
    let mut sent = 0;
    let mut received = 0;
    while received < n {
        while sent < n && sent - received < window {
            let mut m = make(sent);
            m.metadata.id = sent as u16;
            sock.send_to(&m.to_bytes().unwrap(), server).unwrap();
            sent += 1;
        }
        let (len, _) = sock.recv_from(&mut buf).expect("answer within 2 s");
        let r = Message::from_bytes(&buf[..len]).unwrap();
        let first = r
            .answers
            .iter()
            .find_map(|a| match &a.data {
                RData::A(a) => Some(a.to_string()),
                RData::AAAA(a) => Some(a.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "none".into());
        // The id is the query's index mod 2^16; with at most `window` in flight, the latest
        // query with that id is the one answered.
        let back = usize::from(((sent - 1) as u16).wrapping_sub(r.metadata.id));
        let slot = &mut firsts[sent - 1 - back];
        assert!(slot.is_empty(), "two answers to query {}", r.metadata.id);
        *slot = first;
        received += 1;
    }
    firsts
}

/// [`first_addresses`], counted.
fn distribution(server: SocketAddr, n: usize, make: impl Fn(usize) -> Message) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for first in first_addresses(server, n, make) {
        *counts.entry(first).or_default() += 1;
    }
    counts
}

#[test]
fn weighted_shares_follow_weights_and_drained_is_never_chosen() {
    let s = server();
    let n = 100_000;
    let counts = distribution(s.dns, n, |_| query("weighted.svc.test.", RecordType::A));
    assert_eq!(counts.get("192.0.2.14"), None, "drained region chosen: {counts:?}");
    for (addr, weight) in [("192.0.2.11", 50.0), ("192.0.2.12", 30.0), ("192.0.2.13", 20.0)] {
        let share = counts.get(addr).copied().unwrap_or(0) as f64 / n as f64 * 100.0;
        assert!((share - weight).abs() <= 1.0, "{addr}: {share:.2}% vs {weight}% ({counts:?})");
    }
    // One address per answer, the service TTL, and no client dependence: ECS scope 0.
    let r = udp(s.dns, &with_edns(query("weighted.svc.test.", RecordType::A), 1232, Some("81.2.69.0/24")));
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].ttl, 20);
    assert!(r.metadata.authoritative);
    assert_eq!(scope(&r), Some(0));
}

#[test]
fn failover_answers_the_best_priority() {
    let s = server();
    for _ in 0..20 {
        let r = udp(s.dns, &query("failover.svc.test.", RecordType::A));
        assert_eq!(addresses(&r), ["192.0.2.11"]);
        assert_eq!(r.answers[0].ttl, 30, "default service TTL");
    }
    let r = udp(s.dns, &query("failover.svc.test.", RecordType::AAAA));
    assert_eq!(addresses(&r), ["2001:db8::11"]);
    // Not client dependent: ECS scope 0.
    let r = udp(s.dns, &with_edns(query("failover.svc.test.", RecordType::A), 1232, Some("81.2.69.0/24")));
    assert_eq!((addresses(&r), scope(&r)), (vec!["192.0.2.11".to_string()], Some(0)));
}

#[test]
fn multivalue_answers_one_region_by_default_rotated() {
    let s = server();
    let n = 3000;
    let firsts = first_addresses(s.dns, n, |_| query("multi1.svc.test.", RecordType::A));
    for _ in 0..5 {
        assert_eq!(addresses(&udp(s.dns, &query("multi1.svc.test.", RecordType::A))).len(), 1);
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for f in &firsts {
        *counts.entry(f.as_str()).or_default() += 1;
    }
    for addr in ["192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        let c = counts.get(addr).copied().unwrap_or(0);
        assert!((800..=1200).contains(&c), "{addr}: {c} of {n} ({counts:?})");
    }
}

#[test]
fn nearest_counts_a_regions_bias_as_distance() {
    let s = server();
    // far-biased is in Singapore with bias_km = 10000. London: eu-west 0 km against
    // 10,880 - 10,000 = 880 km, so eu-west. Seattle: eu-west 7,700 km against about
    // 13,000 - 10,000 = 3,000 km, so far-biased (without the bias, eu-west).
    expect_regions(&s, "biased.svc.test.", &[("81.2.69.0/24", "192.0.2.12"), ("216.160.83.0/24", "192.0.2.15")], true);
}

#[test]
fn services_in_a_second_zone_are_answered_with_its_soa() {
    let s = server();
    let r = udp(s.dns, &query("www.other.test.", RecordType::A));
    assert_eq!((r.metadata.response_code, addresses(&r)), (ResponseCode::NoError, vec!["192.0.2.12".to_string()]));
    assert!(r.metadata.authoritative);
    assert_eq!(addresses(&udp(s.dns, &query("api.eu.other.test.", RecordType::A))), ["192.0.2.12"]);
    // Names that exist through a service: NODATA with the SOA for the types the service does
    // not answer, never NXDOMAIN, and the zone's wildcard covers neither.
    for (name, qtype) in [
        ("www.other.test.", RecordType::MX),
        ("www.other.test.", RecordType::TXT),
        ("eu.other.test.", RecordType::A),
        ("eu.other.test.", RecordType::TXT),
        ("weighted.svc.test.", RecordType::MX),
    ] {
        let r = udp(s.dns, &query(name, qtype));
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0), "{name} {qtype}");
        let soa = r.authorities.first().map(|a| (a.name.to_ascii(), a.record_type()));
        let apex = if name.ends_with("svc.test.") { "svc.test." } else { "other.test." };
        assert_eq!(soa, Some((apex.to_string(), RecordType::SOA)), "{name} {qtype}: {r:?}");
    }
    // Other names: the wildcard answers, and below a service name is NXDOMAIN.
    assert_eq!(udp(s.dns, &query("x.other.test.", RecordType::TXT)).answers.len(), 1);
    let r = udp(s.dns, &query("x.www.other.test.", RecordType::A));
    assert_eq!(r.answers.len(), 0);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

/// Issue 3: remove one of 5 regions; only the clients it had move, about 1/5 of 10,000.
#[test]
fn sticky_moves_only_the_clients_of_a_failed_region() {
    let s = server();
    let n = 10_000;
    // 10,000 client subnets: 10.0.0.0/24 .. 10.39.15.0/24.
    let ask = |i: usize| {
        let ecs = format!("10.{}.{}.0/24", i / 256, i % 256);
        with_edns(query("sticky5.svc.test.", RecordType::A), 1232, Some(&ecs))
    };
    let before = first_addresses(s.dns, n, ask);
    let (code, body) =
        http(s.admin.unwrap(), "POST", "/v1/regions/st3/force", Some("test-token-ops"), Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    let after = first_addresses(s.dns, n, ask);
    let mut moved: HashMap<&str, usize> = HashMap::new();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if b == "192.0.2.103" {
            assert_ne!(a, "192.0.2.103", "subnet {i} still on the failed region");
            *moved.entry(a.as_str()).or_default() += 1;
        } else {
            assert_eq!(a, b, "subnet {i} moved though its region is up");
        }
    }
    let total: usize = moved.values().sum();
    assert!((1700..=2300).contains(&total), "{total} of {n} subnets moved, expected about 2000");
    // They spread over the four regions left, about 500 each.
    for r in ["192.0.2.101", "192.0.2.102", "192.0.2.104", "192.0.2.105"] {
        let m = moved.get(r).copied().unwrap_or(0);
        assert!((350..=650).contains(&m), "{r} took {m} of the {total} moved ({moved:?})");
    }
}

#[test]
fn multivalue_gives_n_rotated_regions() {
    let s = server();
    let counts = distribution(s.dns, 3000, |_| query("multi.svc.test.", RecordType::A));
    // Every region leads the answer about a third of the time.
    for addr in ["192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        let c = counts.get(addr).copied().unwrap_or(0);
        assert!((800..1200).contains(&c), "{addr} first in {c} of 3000: {counts:?}");
    }
    for _ in 0..10 {
        let r = udp(s.dns, &query("multi.svc.test.", RecordType::A));
        assert_eq!(r.answers.len(), 2);
        let a = addresses(&r);
        assert_ne!(a[0], a[1]);
    }
}

#[test]
fn sticky_keeps_a_subnet_on_one_region_and_spreads_subnets() {
    let s = server();
    let mut per_region: HashMap<String, usize> = HashMap::new();
    for i in 0..300u32 {
        let subnet = format!("10.{}.{}.0/24", i / 256, i % 256);
        let first = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some(&subnet)));
        assert_eq!(scope(&first), Some(24), "the answer depends on the client's /24");
        let again = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some(&subnet)));
        assert_eq!(addresses(&first), addresses(&again), "{subnet} moved");
        *per_region.entry(addresses(&first)[0].clone()).or_default() += 1;
    }
    // Weights 50/30/20 over 300 subnets.
    for (addr, expect) in [("192.0.2.11", 150), ("192.0.2.12", 90), ("192.0.2.13", 60)] {
        let c = per_region.get(addr).copied().unwrap_or(0);
        assert!(c.abs_diff(expect) < 35, "{addr}: {c} subnets, expected about {expect}: {per_region:?}");
    }
    // A wider ECS source than the hash uses still gets the source prefix back as the scope.
    let r = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some("10.1.0.0/16")));
    assert_eq!(scope(&r), Some(16));
}

#[test]
fn missing_family_is_nodata_with_soa() {
    let s = server();
    let r = udp(s.dns, &query("v4only.svc.test.", RecordType::AAAA));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // Other types at a service name: NODATA too.
    let r = udp(s.dns, &query("failover.svc.test.", RecordType::MX));
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // AAAA of a service whose regions partly lack IPv6 only names those that have it.
    let counts = distribution(s.dns, 500, |_| query("weighted.svc.test.", RecordType::AAAA));
    assert!(counts.keys().all(|a| a == "2001:db8::11" || a == "2001:db8::12"), "{counts:?}");
}

#[test]
fn hostname_region_is_answered_with_a_cname() {
    let s = server();
    let r = udp(s.dns, &query("cloud.svc.test.", RecordType::A));
    assert_eq!(lines(&r.answers), ["cloud.svc.test. 60 CNAME lb-1.cloud.example."]);
    let r = udp(s.dns, &query("cloud.svc.test.", RecordType::AAAA));
    assert_eq!(r.answers.len(), 1);
    let r = udp(s.dns, &query("cloud.svc.test.", RecordType::CNAME));
    assert_eq!(r.answers.len(), 1);
}

#[test]
fn static_cname_to_a_service_is_followed() {
    let s = server();
    let r = udp(s.dns, &query("www.svc.test.", RecordType::A));
    assert_eq!(r.answers.len(), 2);
    assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(r.answers[1].name.to_ascii(), "weighted.svc.test.");
    assert_eq!(r.answers[1].ttl, 20);
    // Static records beside services still answer as before.
    assert_eq!(addresses(&udp(s.dns, &query("static.svc.test.", RecordType::A))), ["192.0.2.80"]);
}

#[test]
fn dig_shows_the_chosen_region_and_ecs_scope() {
    let s = server();
    let out = dig(s.dns, &["sticky.svc.test", "A", "+subnet=81.2.69.0/24"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("CLIENT-SUBNET: 81.2.69.0/24/24"), "{out}");
    // The region the rendezvous hash gives this subnet (fixed: it depends only on the region
    // names and the subnet), the same one a second client is given.
    assert!(out.contains("sticky.svc.test.\t30\tIN\tA\t192.0.2.12\n"), "{out}");
    let r = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some("81.2.69.0/24")));
    assert_eq!(addresses(&r), ["192.0.2.12"]);
}

#[test]
fn config_errors_name_the_line_and_field() {
    let dir = TempDir::new("gslbcfg");
    dir.write("zones/svc.test.zone", "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\nstatic IN A 192.0.2.2\n");
    let cfg = dir.write(
        "gslbd.toml",
        "[regions.a]\naddresses = [\"192.0.2.1\"]\n\n[services.\"x.svc.test\"]\nregions = [\"a\", \"fra-3\"]\npolicy = [\"weighted\", \"failover\"]\n\n[services.\"static.svc.test\"]\nregions = [\"a\"]\npolicy = \"teleport\"\n\n[services.\"y.other.test\"]\nregions = [\"a\"]\npolicy = \"failover\"\n",
    );
    let out = std::process::Command::new(bin()).args(["check", "--config", cfg.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let c = cfg.display();
    assert!(err.contains(&format!("{c}:5:17: error: services.\"x.svc.test\".regions names unknown region \"fra-3\"\n  hint: define it as [regions.NAME]")), "{err}");
    assert!(err.contains(&format!("{c}:6:11: error: policy weighted picks the answer, so it must come last")), "{err}");
    assert!(err.contains(&format!("{c}:10:10: error: service static.svc.test.: unknown policy \"teleport\"")), "{err}");
    // Zone cross-checks run once the config itself is valid.
    let cfg2 = dir.write(
        "gslbd2.toml",
        "[regions.a]\naddresses = [\"192.0.2.1\"]\n\n[services.\"static.svc.test\"]\nregions = [\"a\"]\npolicy = \"failover\"\n\n[services.\"y.other.test\"]\nregions = [\"a\"]\npolicy = \"failover\"\n",
    );
    let out = std::process::Command::new(bin()).args(["check", "--config", cfg2.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "gslbd2.toml:4:11: error: service static.svc.test. collides with static A, AAAA or CNAME records in"
        ),
        "{err}"
    );
    assert!(err.contains("gslbd2.toml:8:11: error: service y.other.test. is not inside any served zone"), "{err}");
    // Chains that cannot work: no regions, no policy, a step twice, a map naming a region
    // outside the service's pool.
    let cfg3 = dir.write(
        "gslbd3.toml",
        "[regions.a]\naddresses = [\"192.0.2.1\"]\n[regions.b]\naddresses = [\"192.0.2.2\"]\n\n[services.\"none.svc.test\"]\nregions = []\npolicy = \"failover\"\n\n[services.\"empty.svc.test\"]\nregions = [\"a\"]\npolicy = []\n\n[services.\"twice.svc.test\"]\nregions = [\"a\", \"b\"]\npolicy = [\"sticky\", \"sticky\"]\n\n[services.\"pool.svc.test\"]\nregions = [\"a\"]\npolicy = [\"geo\", \"failover\"]\n[services.\"pool.svc.test\".geo]\nnets = { \"10.0.0.0/8\" = [\"b\"] }\n",
    );
    let out = std::process::Command::new(bin()).args(["check", "--config", cfg3.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "gslbd3.toml:7:11: error: service none.svc.test. has no regions",
        "gslbd3.toml:12:10: error: service empty.svc.test. has an empty policy chain",
        "gslbd3.toml:16:21: error: policy sticky appears twice in service twice.svc.test.'s chain",
        "gslbd3.toml:22:26: error: services.\"pool.svc.test\".geo.nets: region \"b\" is not in service pool.svc.test.'s regions",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    assert!(err.contains("5 error(s)"), "{err}");
}

/// (ECS subnet, expected address) for a service; checks the scope too.
fn expect_regions(s: &Server, name: &str, cases: &[(&str, &str)], want_scope: bool) {
    for (ecs, want) in cases {
        let r = udp(s.dns, &with_edns(query(name, RecordType::A), 1232, Some(ecs)));
        assert_eq!(addresses(&r), [*want], "{name} for {ecs}");
        let prefix: u8 = ecs.split_once('/').unwrap().1.parse().unwrap();
        assert_eq!(scope(&r), Some(if want_scope { prefix } else { 0 }), "{name} for {ecs}: ECS scope");
    }
}

#[test]
fn geo_maps_networks_subdivisions_countries_and_continents() {
    let s = server();
    expect_regions(
        &s,
        "geo.svc.test.",
        &[
            ("81.2.69.0/24", "192.0.2.12"),     // GB, EU -> eu-west
            ("89.160.20.0/24", "192.0.2.12"),   // SE, EU
            ("149.101.100.0/24", "192.0.2.11"), // US-DC, NA -> us-east
            ("216.160.83.0/24", "192.0.2.13"),  // US-WA: the subdivision rule wins -> ap-south
            ("200.160.0.0/24", "192.0.2.12"),   // BR: the country rule beats SA -> us-east
            ("202.196.224.0/24", "192.0.2.13"), // PH, AS -> ap-south
            ("1.128.0.0/16", "192.0.2.13"),     // AU, OC -> ap-south
            ("41.0.0.0/16", "192.0.2.12"),      // ZA, AF -> eu-west
            ("10.99.1.0/24", "192.0.2.13"),     // operator network override
        ],
        true,
    );
    // IPv6 clients. NO (EU) -> eu-west. JP (AS) maps to ap-south, which has no IPv6: geo
    // leaves the AAAA candidates as they are and nearest picks London (9,600 km) over
    // Washington (10,900 km).
    for (ecs, want) in [("2a02:cf40::/29", "2001:db8::12"), ("2001:218::/32", "2001:db8::12")] {
        let r = udp(s.dns, &with_edns(query("geo.svc.test.", RecordType::AAAA), 1232, Some(ecs)));
        assert_eq!(addresses(&r), [want], "{ecs}");
        assert_eq!(scope(&r), Some(ecs.split_once('/').unwrap().1.parse().unwrap()));
    }
    // Without ECS the packet's source (127.0.0.1: NA in the fixture) decides, and the answer
    // carries no ECS option at all.
    let r = udp(s.dns, &with_edns(query("geo.svc.test.", RecordType::A), 1232, None));
    assert_eq!(addresses(&r), ["192.0.2.11"]);
    assert_eq!(scope(&r), None);
    // ECS source prefix 0: the client asks us not to use its address: source decides, scope 0.
    let r = udp(s.dns, &with_edns(query("geo.svc.test.", RecordType::A), 1232, Some("0.0.0.0/0")));
    assert_eq!(addresses(&r), ["192.0.2.11"]);
    assert_eq!(scope(&r), Some(0));
}

#[test]
fn unknown_clients_fall_through_to_nearest_then_default() {
    let s = server();
    // 8.8.8.0/24 is not in the database: nearest has no coordinates and uses its default.
    let r = udp(s.dns, &with_edns(query("near.svc.test.", RecordType::A), 1232, Some("8.8.8.0/24")));
    assert_eq!(addresses(&r), ["192.0.2.12"], "nearest.default");
    // 192.0.2.0/24 is in the database (NL) but without coordinates: default too.
    let r = udp(s.dns, &with_edns(query("near.svc.test.", RecordType::A), 1232, Some("192.0.2.0/24")));
    assert_eq!(addresses(&r), ["192.0.2.12"]);
}

#[test]
fn nearest_picks_by_great_circle_distance() {
    let s = server();
    expect_regions(
        &s,
        "near.svc.test.",
        &[
            ("81.2.69.0/24", "192.0.2.12"),     // London -> eu-west
            ("41.0.0.0/16", "192.0.2.13"),      // Johannesburg: Singapore 8,650 km beats London 9,070 km
            ("216.160.83.0/24", "192.0.2.11"),  // Seattle -> us-east
            ("200.160.0.0/24", "192.0.2.11"),   // Sao Paulo -> Washington (7,600 km) over London (9,500 km)
            ("202.196.224.0/24", "192.0.2.13"), // Manila -> Singapore
            ("1.128.0.0/16", "192.0.2.13"),     // Sydney -> Singapore
        ],
        true,
    );
}

#[test]
fn geo_chains_with_failover_and_sticky() {
    let s = server();
    // EU pool [eu-west, us-east] ordered by priority: eu-west (2) loses to us-east (1).
    expect_regions(&s, "geofo.svc.test.", &[("81.2.69.0/24", "192.0.2.11"), ("216.160.83.0/24", "192.0.2.13")], true);
    // EU clients spread over eu-west and us-east only; Asian ones all on ap-south.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..64u32 {
        // The fixture's European IPv4 networks: GB, SE, GB.
        let ecs = ["81.2.69.0/24", "89.160.20.0/24", "2.125.160.0/24"][i as usize % 3];
        let r = udp(s.dns, &with_edns(query("geosticky.svc.test.", RecordType::A), 1232, Some(ecs)));
        seen.insert(addresses(&r)[0].clone());
        assert_eq!(scope(&r), Some(24));
    }
    assert!(seen.iter().all(|a| a == "192.0.2.11" || a == "192.0.2.12"), "{seen:?}");
    expect_regions(&s, "geosticky.svc.test.", &[("202.196.224.0/24", "192.0.2.13")], true);
}

#[test]
fn a_service_at_the_apex_keeps_the_zone_records() {
    let dir = TempDir::new("apex");
    dir.write("zones/apex.test.zone", "$ORIGIN apex.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\n@ IN MX 10 mail\nns1 IN A 192.0.2.53\nmail IN A 192.0.2.25\n");
    let cfg = dir.write(
        "gslbd.toml",
        "[regions.a]\naddresses = [\"192.0.2.1\"]\n[regions.b]\naddresses = [\"192.0.2.2\"]\npriority = 1\n[services.\"apex.test\"]\nregions = [\"a\", \"b\"]\npolicy = \"failover\"\n",
    );
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(addresses(&udp(s.dns, &query("apex.test.", RecordType::A))), ["192.0.2.2"]);
    let r = udp(s.dns, &query("apex.test.", RecordType::SOA));
    assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    let r = udp(s.dns, &query("apex.test.", RecordType::MX));
    assert_eq!(lines(&r.answers), ["apex.test. 300 MX 10 mail.apex.test."]);
    let r = udp(s.dns, &query("apex.test.", RecordType::TXT));
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn geoip_database_is_reread_on_reload_and_bad_ones_are_clear_errors() {
    let dir = TempDir::new("georeload");
    dir.write(
        "zones/g.test.zone",
        "$ORIGIN g.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    let build = |csv: &str| {
        let src = dir.write("nets.csv", csv);
        let out = std::process::Command::new(bin())
            .args(["geoip", "build", src.to_str().unwrap(), dir.path().join("geo.mmdb").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    build("network,continent,country,lat,lon\n81.2.69.0/24,EU,GB,51.5,-0.13\n");
    let cfg = dir.write(
        "gslbd.toml",
        "[geoip]\ndatabase = \"geo.mmdb\"\n[regions.eu]\naddresses = [\"192.0.2.1\"]\n[regions.na]\naddresses = [\"192.0.2.2\"]\n[services.\"www.g.test\"]\nregions = [\"eu\", \"na\"]\npolicy = \"geo\"\n[services.\"www.g.test\".geo]\ncontinents = { EU = [\"eu\"], NA = [\"na\"] }\n",
    );
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let ask = || addresses(&udp(s.dns, &with_edns(query("www.g.test.", RecordType::A), 1232, Some("81.2.69.0/24"))));
    assert_eq!(ask(), ["192.0.2.1"]);
    // The operator's new database says that network is in North America.
    build("network,continent,country,lat,lon\n81.2.69.0/24,NA,US,38.9,-77.0\n");
    s.signal("HUP");
    s.wait_log("reloaded");
    assert_eq!(ask(), ["192.0.2.2"]);
    // A corrupt database on reload: the old one keeps serving.
    std::fs::write(dir.path().join("geo.mmdb"), b"not a database").unwrap();
    s.signal("HUP");
    s.wait_log("reload failed");
    assert!(s.log().contains("geo.mmdb"), "{}", s.log());
    assert_eq!(ask(), ["192.0.2.2"]);
    // At start: a clear error naming the file, exit 2.
    drop(s);
    let Err((code, log)) = Server::try_start(&["--config", cfg.to_str().unwrap()]) else { panic!("started") };
    assert_eq!(code, Some(2));
    assert!(log.contains(&format!("{}", dir.path().join("geo.mmdb").display())), "{log}");
    std::fs::remove_file(dir.path().join("geo.mmdb")).unwrap();
    let Err((code, log)) = Server::try_start(&["--config", cfg.to_str().unwrap()]) else { panic!("started") };
    assert_eq!(code, Some(2));
    assert!(log.contains("geo.mmdb"), "{log}");
}

#[test]
fn ipv4_mapped_ecs_addresses_count_as_ipv4() {
    let s = server();
    // ::ffff:81.2.69.0/120 is the GB network 81.2.69.0/24 written as IPv6.
    let r = udp(s.dns, &with_edns(query("geo.svc.test.", RecordType::A), 1232, Some("::ffff:81.2.69.0/120")));
    assert_eq!(addresses(&r), ["192.0.2.12"], "placed in GB like 81.2.69.0/24");
    assert_eq!(scope(&r), Some(120), "the scope is in the family the resolver used");
    let r = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some("::ffff:10.7.7.0/120")));
    let v4 = udp(s.dns, &with_edns(query("sticky.svc.test.", RecordType::A), 1232, Some("10.7.7.0/24")));
    assert_eq!(addresses(&r), addresses(&v4), "sticky hashes the mapped address as the IPv4 subnet");
}

/// The rcode, the answer records and the types in AUTHORITY of one response.
fn outcome(r: &Message) -> (ResponseCode, Vec<String>, Vec<String>) {
    let auth = r.authorities.iter().map(|a| format!("{} {}", a.name.to_ascii(), a.record_type())).collect();
    (r.metadata.response_code, lines(&r.answers), auth)
}

#[test]
fn a_cname_into_a_service_without_the_family_ends_in_nodata_with_the_soa() {
    let s = server();
    let soa = || vec!["gslb.test. SOA".to_string()];
    #[rustfmt::skip]
    let cases: &[(&str, RecordType, &[&str], Vec<String>)] = &[
        // The issue's case: the CNAME, then NODATA for v4only with the zone's SOA.
        ("docs.gslb.test.", RecordType::AAAA, &["docs.gslb.test. 300 CNAME v4only.gslb.test."], soa()),
        // Two links, then the service.
        ("chain.gslb.test.", RecordType::AAAA, &["chain.gslb.test. 300 CNAME docs.gslb.test.", "docs.gslb.test. 300 CNAME v4only.gslb.test."], soa()),
        ("docs6.gslb.test.", RecordType::A, &["docs6.gslb.test. 300 CNAME v6only.gslb.test."], soa()),
        // The same through a wildcard (RFC 4592: the synthesized CNAME carries the qname).
        ("x.wild.gslb.test.", RecordType::AAAA, &["x.wild.gslb.test. 300 CNAME v4only.gslb.test."], soa()),
        // A CNAME to a static name without the type: right before, kept right.
        ("tostatic.gslb.test.", RecordType::AAAA, &["tostatic.gslb.test. 300 CNAME static4.gslb.test."], soa()),
        // Into the other served zone: NODATA carries that zone's SOA (RFC 6604 section 2.1).
        ("toother.gslb.test.", RecordType::AAAA, &["toother.gslb.test. 300 CNAME v4only.svc.test."], vec!["svc.test. SOA".to_string()]),
        // The family the service has: answered after the CNAME, no SOA.
        ("docs.gslb.test.", RecordType::A, &["docs.gslb.test. 300 CNAME v4only.gslb.test.", "v4only.gslb.test. 30 A 192.0.2.13"], vec![]),
        // qtype CNAME at a service of addresses: NODATA; at a hostname region: its CNAME.
        ("v4only.gslb.test.", RecordType::CNAME, &[], soa()),
        ("cloud.gslb.test.", RecordType::CNAME, &["cloud.gslb.test. 30 CNAME lb-1.cloud.example."], vec![]),
        // A CNAME to a hostname region: both links, the target outside our zones.
        ("tocloud.gslb.test.", RecordType::AAAA, &["tocloud.gslb.test. 300 CNAME cloud.gslb.test.", "cloud.gslb.test. 30 CNAME lb-1.cloud.example."], vec![]),
    ];
    for (name, qtype, answers, authority) in cases {
        // `lines` sorts the records.
        let mut answers: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
        answers.sort();
        let want = (ResponseCode::NoError, answers, authority.clone());
        assert_eq!(outcome(&udp(s.dns, &query(name, *qtype))), want, "{name} {qtype} over UDP");
        assert_eq!(outcome(&tcp(s.dns, &[query(name, *qtype)])[0]), want, "{name} {qtype} over TCP");
    }
    // Names below a service name do not exist (NXDOMAIN with the SOA), wildcard or not.
    for name in ["x.v4only.gslb.test.", "a.b.v6only.gslb.test."] {
        let r = udp(s.dns, &query(name, RecordType::A));
        assert_eq!(outcome(&r), (ResponseCode::NXDomain, vec![], soa()), "{name}");
    }
    // What dig shows for the headline case: the CNAME, and the SOA in AUTHORITY.
    let out = dig(s.dns, &["docs.gslb.test", "AAAA"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("ANSWER: 1, AUTHORITY: 1"), "{out}");
    assert!(out.contains("gslb.test.\t\t60\tIN\tSOA\tns1.gslb.test."), "{out}");
}

#[test]
fn any_at_a_service_gives_one_rrset_the_name_owns() {
    let s = server();
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        // Only IPv6 regions: its AAAA, never an empty NOERROR.
        ("v6only.gslb.test.", &["v6only.gslb.test. 30 AAAA 2001:db8::61"]),
        ("v4only.gslb.test.", &["v4only.gslb.test. 30 A 192.0.2.13"]),
        // A hostname region: its CNAME.
        ("cloud.gslb.test.", &["cloud.gslb.test. 30 CNAME lb-1.cloud.example."]),
        // Through a CNAME (RFC 8482 section 4.1: the CNAME is the RRset the alias owns).
        ("docs6.gslb.test.", &["docs6.gslb.test. 300 CNAME v6only.gslb.test."]),
    ];
    for (name, answers) in cases {
        let want = (ResponseCode::NoError, answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec![]);
        assert_eq!(outcome(&udp(s.dns, &query(name, RecordType::ANY))), want, "{name} ANY over UDP");
        assert_eq!(outcome(&tcp(s.dns, &[query(name, RecordType::ANY)])[0]), want, "{name} ANY over TCP");
    }
}

#[test]
fn twenty_equal_regions_each_take_their_share() {
    // Each of 20 regions takes 25-75 of 1,000 answers. A fair pick still leaves one of the 40
    // counts outside that band in about 1 % of samples (binomial tail), so a sample that misses
    // is drawn again, up to three times: a region that is never or rarely chosen (the old fixed
    // array of 16 sums) misses in every sample, chance misses all three about once in 10^6.
    let s = server();
    for service in ["weighted20.svc.test.", "ties20.svc.test."] {
        let mut misses = Vec::new();
        for _ in 0..3 {
            let counts = distribution(s.dns, 1000, |_| query(service, RecordType::A));
            let out: Vec<String> = (1..=20)
                .map(|i| (i, counts.get(&format!("198.51.100.{i}")).copied().unwrap_or(0)))
                .filter(|(_, n)| !(25..=75).contains(n))
                .map(|(i, n)| format!("w{i:02} answered {n} times"))
                .collect();
            if out.is_empty() {
                misses.clear();
                break;
            }
            misses.push(format!("{out:?} in {counts:?}"));
        }
        assert!(misses.is_empty(), "{service}: out of 25..=75 of 1000 in three samples: {misses:#?}");
    }
}
