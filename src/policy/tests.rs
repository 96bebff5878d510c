//! Each policy as a table of cases: candidates in, candidates out, for clients placed
//! by a stub GeoIP lookup. No sockets, no files.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::geoip::{Code, GeoLookup, Location};
use crate::gslb::Gslb;
use crate::gslb::status::Status;
use crate::region::RegionStatus;
use crate::zone::{Zone, ZoneSet};

const ZONE: &str = "$ORIGIN t.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\n";

/// Regions: us (DC, priority 1, weight 50), eu (London, priority 2, weight 30), ap
/// (Singapore, priority 2, weight 20).
fn gslb(services: &str) -> Gslb {
    let toml = format!(
        "[geoip]\ndatabase = \"unused\"\n\
         [regions.us]\naddresses = [\"192.0.2.10\"]\ncoordinates = [38.9, -77.0]\npriority = 1\nweight = 50\n\
         [regions.eu]\naddresses = [\"192.0.2.20\"]\ncoordinates = [51.5, -0.13]\npriority = 2\nweight = 30\n\
         [regions.ap]\naddresses = [\"192.0.2.30\"]\ncoordinates = [1.35, 103.8]\npriority = 2\nweight = 20\n{services}"
    );
    let cfg = crate::config::parse(&toml, Path::new("t.toml")).unwrap();
    let apex = crate::name::Name::parse("t.test.", None).unwrap();
    let recs = crate::zone::parse::parse_str(ZONE, Path::new("z"), &apex, Path::new("/")).unwrap();
    let zones = ZoneSet::new(vec![Zone::from_records(&apex, recs, Path::new("z")).unwrap()]);
    Gslb::build(&cfg.gslb, &zones, None, Path::new("t.toml")).unwrap()
}

/// Places 1.x.x.x in GB (London), 2.x in US-DC, 3.x in SG, 4.x in US-WA without
/// coordinates; anything else is unknown.
struct Stub;
impl GeoLookup for Stub {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        let IpAddr::V4(v4) = ip else { return None };
        let (cont, country, sub, coords) = match v4.octets()[0] {
            1 => ("EU", "GB", Some("ENG"), Some((51.5, -0.1))),
            2 => ("NA", "US", Some("DC"), Some((38.9, -77.0))),
            3 => ("AS", "SG", None, Some((1.3, 103.8))),
            4 => ("NA", "US", Some("WA"), None),
            _ => return None,
        };
        Some(Location {
            continent: Code::new(cont)?,
            country: Code::new(country)?,
            subdivision: sub.and_then(Code::new),
            coordinates: coords,
            prefix_len: 24,
        })
    }
}

/// The status for health and RTTs given in the order us, eu, ap (region ids follow the
/// config's sorted table order, not this one).
fn status_of(g: &Gslb, up: [bool; 3], rtt: [Option<f64>; 3], prev: Option<&Status>) -> Status {
    let regions = g
        .regions
        .iter()
        .map(|r| {
            let i = ["us", "eu", "ap"].iter().position(|n| *n == r.name).unwrap();
            RegionStatus { is_up: up[i], is_forced: false, weight: r.weight, rtt_ms: rtt[i], utilisation: None }
        })
        .collect();
    Status::build(g, regions, prev)
}

fn run(g: &Gslb, up: [bool; 3], client: &str, rtt: [Option<f64>; 3]) -> Vec<&'static str> {
    let status = status_of(g, up, rtt, None);
    let mut ctx = Ctx {
        regions: &g.regions,
        status: &status.regions,
        rechosen: status.services[0].rechosen,
        client: Client::new(client.parse().unwrap(), Some(&Stub)),
        shed: None,
    };
    let names = ["us", "eu", "ap"];
    select(&g.services[0].chain, status.services[0].candidates(crate::rtype::A), &mut ctx)
        .iter()
        .map(|&id| *names.iter().find(|n| **n == g.regions[id as usize].name).unwrap())
        .collect()
}

const ALL_UP: [bool; 3] = [true, true, true];
const NO_RTT: [Option<f64>; 3] = [None, None, None];

#[test]
fn geo_maps_most_specific_first_and_passes_on_when_down() {
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"geo\"\n\
         [services.\"s.t.test\".geo]\ncontinents = { EU = [\"eu\"], NA = [\"us\"], AS = [\"ap\"] }\n\
         countries = { SG = [\"eu\"] }\nsubdivisions = { \"US-WA\" = [\"ap\"] }\nnets = { \"2.9.0.0/16\" = [\"eu\"], \"2.9.9.0/24\" = [\"ap\"] }\n\
         default = [\"us\"]\n",
    );
    // (client, regions up, expected)
    let cases: &[(&str, [bool; 3], &[&str])] = &[
        ("1.0.0.1", ALL_UP, &["eu"]),                    // continent EU
        ("2.0.0.1", ALL_UP, &["us"]),                    // continent NA
        ("3.0.0.1", ALL_UP, &["eu"]),                    // country SG beats continent AS
        ("4.0.0.1", ALL_UP, &["ap"]),                    // subdivision US-WA beats continent NA
        ("2.9.1.1", ALL_UP, &["eu"]),                    // operator network /16
        ("2.9.9.1", ALL_UP, &["ap"]),                    // the longer /24 wins
        ("9.9.9.9", ALL_UP, &["us"]),                    // unknown: default
        ("1.0.0.1", [true, false, true], &["us"]),       // EU's region down: default
        ("9.9.9.9", [false, true, true], &["eu", "ap"]), // default down too: the healthy ones
    ];
    for (client, up, want) in cases {
        assert_eq!(run(&g, *up, client, NO_RTT), *want, "{client} {up:?}");
    }
}

#[test]
fn nearest_by_distance_with_default_for_unplaced_clients() {
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"nearest\"\nnearest = { default = [\"ap\"] }\n",
    );
    let cases: &[(&str, [bool; 3], &[&str])] = &[
        ("1.0.0.1", ALL_UP, &["eu"]),
        ("2.0.0.1", ALL_UP, &["us"]),
        ("3.0.0.1", ALL_UP, &["ap"]),
        ("1.0.0.1", [true, false, true], &["us"]), // London's region down: Washington is nearer than Singapore
        ("4.0.0.1", ALL_UP, &["ap"]),              // placed but no coordinates: default
        ("9.9.9.9", ALL_UP, &["ap"]),              // unknown: default
    ];
    for (client, up, want) in cases {
        assert_eq!(run(&g, *up, client, NO_RTT), *want, "{client} {up:?}");
    }
}

#[test]
fn failover_takes_the_best_priority_tier() {
    let g = gslb("[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"failover\"\n");
    assert_eq!(run(&g, ALL_UP, "9.9.9.9", NO_RTT), ["us"]);
    assert_eq!(run(&g, [false, true, true], "9.9.9.9", NO_RTT), ["eu", "ap"], "tie at priority 2: all");
    assert_eq!(run(&g, [false, false, true], "9.9.9.9", NO_RTT), ["ap"]);
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"failover\"\nfailover = { ties = \"weighted\" }\n",
    );
    let mut eu = 0;
    for _ in 0..1000 {
        let r = run(&g, [false, true, true], "9.9.9.9", NO_RTT);
        assert_eq!(r.len(), 1);
        assert_ne!(r[0], "us");
        eu += usize::from(r[0] == "eu");
    }
    assert!((520..680).contains(&eu), "30/20 between eu and ap: eu {eu} of 1000");
}

#[test]
fn multivalue_rotates_and_caps() {
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"multivalue\"\nmultivalue = { count = 2 }\n",
    );
    let mut leaders = std::collections::HashMap::new();
    for _ in 0..900 {
        let r = run(&g, ALL_UP, "9.9.9.9", NO_RTT);
        assert_eq!(r.len(), 2);
        assert_ne!(r[0], r[1]);
        *leaders.entry(r[0]).or_insert(0) += 1;
    }
    assert!(leaders.len() == 3 && leaders.values().all(|&n| (230..370).contains(&n)), "{leaders:?}");
    assert_eq!(run(&g, [false, false, true], "9.9.9.9", NO_RTT), ["ap"], "fewer healthy than count");
}

#[test]
fn latency_keeps_its_choice_within_the_margin() {
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = \"latency\"\nlatency = { margin_percent = 20, margin_ms = 1 }\n",
    );
    let name = |id: Option<u16>| id.map(|i| g.regions[i as usize].name.clone());
    // (RTTs, expected choice), each status built from the previous one.
    let steps: &[([Option<f64>; 3], &str)] = &[
        ([Some(30.0), Some(10.0), Some(50.0)], "eu"), // lowest RTT
        ([Some(30.0), Some(11.5), Some(10.0)], "eu"), // ap better by 1.5 ms < 20 % of 11.5 + 1: keep eu
        ([Some(30.0), Some(20.0), Some(10.0)], "ap"), // ap better by 10 ms > 5 ms: ap takes over
        ([Some(30.0), Some(9.0), Some(10.0)], "ap"),  // eu better by 1 ms: keep ap
        ([None, None, None], "ap"),                   // no data: keep the choice
    ];
    let mut prev: Option<Status> = None;
    for (rtt, want) in steps {
        let st = status_of(&g, ALL_UP, *rtt, prev.as_ref());
        assert_eq!(name(st.services[0].rechosen).as_deref(), Some(*want), "{rtt:?}");
        prev = Some(st);
    }
    assert_eq!(run(&g, ALL_UP, "9.9.9.9", [Some(30.0), Some(10.0), Some(50.0)]), ["eu"]);
}

/// 64 regions r00..r63 (ids in that order), equal weight 100, priority 1, spread over the
/// southern hemisphere except r63, which stands in London; `services` adds the service.
fn gslb64(services: &str) -> Gslb {
    let mut toml = String::from("[geoip]\ndatabase = \"unused\"\n");
    for i in 0..64 {
        let coords = if i == 63 { "[51.5, -0.13]".to_string() } else { format!("[-40.0, {}.0]", i * 5 - 160) };
        toml += &format!("[regions.r{i:02}]\naddresses = [\"10.0.0.{i}\"]\ncoordinates = {coords}\npriority = 1\n");
    }
    let all: Vec<String> = (0..64).map(|i| format!("\"r{i:02}\"")).collect();
    toml += &format!("[services.\"s.t.test\"]\nregions = [{}]\n{services}", all.join(", "));
    let cfg = crate::config::parse(&toml, Path::new("t.toml")).unwrap();
    let apex = crate::name::Name::parse("t.test.", None).unwrap();
    let recs = crate::zone::parse::parse_str(ZONE, Path::new("z"), &apex, Path::new("/")).unwrap();
    let zones = ZoneSet::new(vec![Zone::from_records(&apex, recs, Path::new("z")).unwrap()]);
    Gslb::build(&cfg.gslb, &zones, None, Path::new("t.toml")).unwrap()
}

/// Runs the service of `g` `n` times for clients `client(i)` and counts how often each region
/// id is in the answer.
fn counts64(g: &Gslb, rtt: impl Fn(usize) -> Option<f64>, n: usize, client: impl Fn(usize) -> IpAddr) -> Vec<usize> {
    let regions = (0..64)
        .map(|i| RegionStatus { is_up: true, is_forced: false, weight: 100, rtt_ms: rtt(i), utilisation: None })
        .collect();
    let status = Status::build(g, regions, None);
    let mut counts = vec![0; 64];
    for i in 0..n {
        let mut ctx = Ctx {
            regions: &g.regions,
            status: &status.regions,
            rechosen: status.services[0].rechosen,
            client: Client::new(client(i), Some(&Stub)),
            shed: None,
        };
        for r in select(&g.services[0].chain, status.services[0].candidates(crate::rtype::A), &mut ctx) {
            counts[r as usize] += 1;
        }
    }
    counts
}

/// Fixed capacities must never drop regions: every policy over 64 regions can answer every
/// one of them (a fixed array of 16 weights once left regions 17 and up unanswered).
#[test]
fn every_policy_reaches_all_of_64_regions() {
    let any = |_: usize| -> IpAddr { "9.9.9.9".parse().unwrap() };
    let subnet = |i: usize| -> IpAddr { format!("100.{}.{}.1", i / 256 % 256, i % 256).parse().unwrap() };
    let spread = |counts: &[usize], lo: usize, hi: usize| counts.iter().all(|&c| (lo..=hi).contains(&c));
    // Random picks: each region near 1/64 of 64,000.
    for policy in ["policy = \"weighted\"", "policy = \"failover\"\nfailover = { ties = \"weighted\" }"] {
        let c = counts64(&gslb64(policy), |_| None, 64_000, any);
        assert!(spread(&c, 700, 1300), "{policy}: {c:?}");
    }
    // Sticky: 64,000 subnets spread over all 64.
    let c = counts64(&gslb64("policy = \"sticky\""), |_| None, 64_000, subnet);
    assert!(spread(&c, 700, 1300), "sticky: {c:?}");
    // Every region in every answer.
    assert_eq!(counts64(&gslb64("policy = \"failover\""), |_| None, 10, any), vec![10; 64], "failover");
    // multivalue's count is capped at 16 by the config check (a UDP answer stays small):
    // 16 of 64 per answer, every region in about a quarter of them.
    let c = counts64(&gslb64("policy = \"multivalue\"\nmultivalue = { count = 16 }"), |_| None, 64_000, any);
    assert!(spread(&c, 15_000, 17_000), "multivalue 16: {c:?}");
    // multivalue with one region per answer: each takes its turn at the head.
    let c = counts64(&gslb64("policy = \"multivalue\""), |_| None, 64_000, any);
    assert!(spread(&c, 700, 1300), "multivalue: {c:?}");
    // The last region is reachable by map, distance and RTT.
    let london = |_: usize| -> IpAddr { "1.1.1.1".parse().unwrap() };
    let mut only_last = vec![0; 64];
    only_last[63] = 10;
    let geo = "policy = \"geo\"\n[services.\"s.t.test\".geo]\ncontinents = { EU = [\"r63\"] }\n";
    assert_eq!(counts64(&gslb64(geo), |_| None, 10, london), only_last, "geo");
    assert_eq!(counts64(&gslb64("policy = \"nearest\""), |_| None, 10, london), only_last, "nearest");
    let rtt = |i: usize| Some(if i == 63 { 5.0 } else { 50.0 + i as f64 });
    assert_eq!(counts64(&gslb64("policy = \"latency\""), rtt, 10, any), only_last, "latency");
}

/// The status of `g`'s regions us, eu and ap, all up at their weights, with these
/// utilisations (in that order).
fn loaded_status(g: &Gslb, util: [Option<f64>; 3]) -> Status {
    let names = ["us", "eu", "ap"];
    let regions: Vec<RegionStatus> = g
        .regions
        .iter()
        .map(|r| {
            let i = names.iter().position(|x| *x == r.name).unwrap();
            RegionStatus { is_up: true, is_forced: false, weight: r.weight, rtt_ms: None, utilisation: util[i] }
        })
        .collect();
    Status::build(g, regions, None)
}

/// The shares of `n` answers per region (us, eu, ap), with utilisations given in that order.
fn load_shares(g: &Gslb, util: [Option<f64>; 3], n: usize) -> [f64; 3] {
    let names = ["us", "eu", "ap"];
    let status = loaded_status(g, util);
    let mut counts = [0usize; 3];
    for _ in 0..n {
        let mut ctx = Ctx {
            regions: &g.regions,
            status: &status.regions,
            rechosen: None,
            client: Client::new("9.9.9.9".parse().unwrap(), None),
            shed: None,
        };
        for id in select(&g.services[0].chain, status.services[0].candidates(crate::rtype::A), &mut ctx) {
            counts[names.iter().position(|x| *x == g.regions[id as usize].name).unwrap()] += 1;
        }
    }
    counts.map(|c| (c as f64 * 100.0 / n as f64).round())
}

#[test]
fn shed_scales_weights_between_the_watermarks_and_stops_full_regions() {
    let g = gslb("[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = [\"shed\", \"weighted\"]\n");
    // Weights 50/30/20. (utilisation us, eu, ap) -> percent of answers, within 2 points.
    type Case = ([Option<f64>; 3], [f64; 3]);
    let cases: &[Case] = &[
        // Unknown load everywhere: the weights.
        ([None, None, None], [50.0, 30.0, 20.0]),
        // Below low: the weights.
        ([Some(0.5), Some(0.7), Some(0.1)], [50.0, 30.0, 20.0]),
        // us at 0.8: weight 25 of 75.
        ([Some(0.8), Some(0.2), Some(0.2)], [33.0, 40.0, 27.0]),
        // us full: nothing while the others are below high.
        ([Some(0.95), Some(0.2), None], [0.0, 60.0, 40.0]),
        // us and eu full, ap unknown: all to ap (unknown is not full).
        ([Some(0.95), Some(1.5), None], [0.0, 0.0, 100.0]),
        // Every region full: none removed, weights all zero: equal shares.
        ([Some(0.95), Some(1.5), Some(0.9)], [33.0, 33.0, 33.0]),
    ];
    for (util, want) in cases {
        let got = load_shares(&g, *util, 30_000);
        for i in 0..3 {
            assert!((got[i] - want[i]).abs() <= 2.0, "{util:?}: {got:?} vs {want:?}");
        }
    }
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = [\"shed\", \"weighted\"]\nshed = { low = 0.5, high = 0.6 }\n",
    );
    assert_eq!(load_shares(&g, [Some(0.6), Some(0.55), Some(0.1)], 1000)[0], 0.0);
}

#[test]
fn least_loaded_keeps_regions_within_the_margin() {
    let g = gslb(
        "[services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = [\"least-loaded\", \"weighted\"]\n\
         least-loaded = { margin = 0.1 }\n",
    );
    type Case = ([Option<f64>; 3], [f64; 3]);
    let cases: &[Case] = &[
        ([Some(0.5), Some(0.2), Some(0.9)], [0.0, 100.0, 0.0]),
        // us and eu within 0.1: both, by weight (50:30).
        ([Some(0.25), Some(0.2), Some(0.9)], [63.0, 38.0, 0.0]),
        // Unknown load is kept beside the least loaded.
        ([Some(0.5), Some(0.2), None], [0.0, 60.0, 40.0]),
        // Nothing known: unchanged.
        ([None, None, None], [50.0, 30.0, 20.0]),
    ];
    for (util, want) in cases {
        let got = load_shares(&g, *util, 30_000);
        for i in 0..3 {
            assert!((got[i] - want[i]).abs() <= 2.0, "{util:?}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn load_settings_are_validated() {
    let errs = |svc: &str| {
        let toml =
            format!("[regions.a]\naddresses = [\"192.0.2.1\"]\n[services.\"s.t.test\"]\nregions = [\"a\"]\n{svc}");
        crate::config::parse(&toml, Path::new("t.toml"))
            .err()
            .map(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    };
    assert!(errs("policy = [\"shed\", \"weighted\"]\nshed = { low = 0.7, high = 0.9 }\n").is_none());
    let e = errs("policy = [\"shed\", \"weighted\"]\nshed = { low = 0.9, high = 0.7 }\n").unwrap();
    assert!(e[0].contains("low 0.9 must be below high 0.7"), "{e:?}");
    let e = errs("policy = [\"least-loaded\"]\nleast-loaded = { margin = -1 }\n").unwrap();
    assert!(e[0].contains("least-loaded.margin"), "{e:?}");
}

#[test]
fn drain_projection_moves_load_by_weight_over_capacity() {
    let g = gslb("");
    let status = loaded_status(&g, [Some(0.6), Some(0.5), None]);
    let us = g.region_id("us").unwrap();
    let p = crate::gslb::shares::drain_projection(&g, &status, us);
    let get = |n: &str| p.iter().find(|x| x.region == g.region_id(n).unwrap()).unwrap().projected;
    // us: 0.6 x capacity 50 (its weight) = 30 units; eu takes 30/50 of them = 18 over its
    // capacity 30: 0.5 + 0.6 = 1.1. ap's load is unknown: unknown projection.
    assert_eq!(get("eu").map(|u| (u * 100.0).round()), Some(110.0));
    assert_eq!(get("ap"), None);
}

#[test]
fn shed_follows_free_capacity_when_every_candidate_has_one() {
    // us: capacity 100, eu: 300, ap: 100 (weights 50/30/20 as above, set on the regions).
    let toml = "[regions.us]\naddresses = [\"192.0.2.10\"]\nweight = 50\ncapacity = 100\n\
         [regions.eu]\naddresses = [\"192.0.2.20\"]\nweight = 30\ncapacity = 300\n\
         [regions.ap]\naddresses = [\"192.0.2.30\"]\nweight = 20\ncapacity = 100\n\
         [services.\"s.t.test\"]\nregions = [\"us\", \"eu\", \"ap\"]\npolicy = [\"shed\", \"weighted\"]\n";
    let cfg = crate::config::parse(toml, Path::new("t.toml")).unwrap();
    let apex = crate::name::Name::parse("t.test.", None).unwrap();
    let recs = crate::zone::parse::parse_str(ZONE, Path::new("z"), &apex, Path::new("/")).unwrap();
    let zones = ZoneSet::new(vec![Zone::from_records(&apex, recs, Path::new("z")).unwrap()]);
    let g = Gslb::build(&cfg.gslb, &zones, None, Path::new("t.toml")).unwrap();
    // Free capacity: us 100 x 0.5 = 50, eu 300 x 0.5 = 150, ap 100 x 0.0 = 0 (full): 25/75/0.
    let got = load_shares(&g, [Some(0.5), Some(0.5), Some(1.0)], 30_000);
    for (g, w) in got.iter().zip([25.0, 75.0, 0.0]) {
        assert!((g - w).abs() <= 2.0, "{got:?}");
    }
    // One load unknown: no free capacity to compare, the weights apply (50/30/20).
    let got = load_shares(&g, [Some(0.5), Some(0.5), None], 30_000);
    for (g, w) in got.iter().zip([50.0, 30.0, 20.0]) {
        assert!((g - w).abs() <= 2.0, "{got:?}");
    }
    // Intended shares follow the same rule.
    let status = loaded_status(&g, [Some(0.5), Some(0.5), Some(1.0)]);
    let intended = crate::gslb::shares::intended(&g, &status, 0);
    let eu = intended.iter().find(|x| x.0 == g.region_id("eu").unwrap()).unwrap().1;
    assert!((eu - 0.75).abs() < 0.01, "{intended:?}");
}
