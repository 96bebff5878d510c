//! Per-query cost of the steering decision, apart from and together with the GeoIP lookup
//! and the whole decode -> answer -> encode path. `cargo bench --bench policy`.
//! Plain timing loops (median of 15 runs of 200,000 iterations each), no framework: the
//! figures go into bench/README.md.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failed setup

mod common;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use gslbd::answer::Transport;
use gslbd::metrics;
use gslbd::policy::{Client, Ctx, select};
use gslbd::rtype;
use gslbd::snapshot::{Snapshot, Source, load};

const ITERS: u32 = 200_000;
const RUNS: usize = 15;

fn median_ns(f: impl FnMut(u32)) -> f64 {
    common::median_ns(ITERS, RUNS, f)
}

fn query(name: &str, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    let opts: Vec<u8> = match ecs {
        Some(a) => [&[0, 8, 0, 7, 0, 1, 24, 0][..], &a[..]].concat(),
        None => vec![],
    };
    p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
    p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
    p.extend_from_slice(&opts);
    p
}

/// Queries for geo.svc.test. with ECS /24s of every test range of the fixture database (a
/// random /24 of the /16s) and of unknown space.
fn many_networks() -> Vec<Vec<u8>> {
    let nets: [[u8; 2]; 13] = [
        [81, 2],
        [89, 160],
        [2, 125],
        [175, 16],
        [67, 43],
        [202, 196],
        [216, 160],
        [149, 101],
        [200, 160],
        [41, 0],
        [1, 128],
        [198, 18],
        [198, 19],
    ];
    let fixed3 = [69, 20, 160, 199, 156, 224, 83, 100, 0];
    let mut seed = 7871u32;
    (0..4000)
        .map(|i| {
            let n = i % nets.len();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let third = fixed3.get(n).copied().unwrap_or((seed >> 16) as u8);
            query("geo.svc.test.", Some([nets[n][0], nets[n][1], third]))
        })
        .collect()
}

fn main() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml");
    let (_, snap): (_, Snapshot) =
        load(&Source { config: Some(cfg), ..Default::default() }).expect("test config loads");
    let geo = snap.gslb.geo.clone().expect("config has a GeoIP database");
    let clients: Vec<IpAddr> =
        ["81.2.69.10", "216.160.83.10", "202.196.224.10", "1.128.0.10", "41.0.0.10", "200.160.0.10", "8.8.8.8"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
    let located: Vec<_> = clients.iter().map(|&c| (c, geo.locate(c))).collect();
    println!("{:<52} {:>10}", "what", "ns/query");

    let t = median_ns(|i| {
        black_box(geo.locate(black_box(clients[i as usize % clients.len()])));
    });
    println!("{:<52} {t:>10.1}", "GeoIP lookup alone (mmdb)");

    for name in [
        "geo.svc.test.",
        "near.svc.test.",
        "weighted.svc.test.",
        "sticky.svc.test.",
        "failover.svc.test.",
        "geofo.svc.test.",
    ] {
        let lower = gslbd::name::Name::parse(name, None).unwrap();
        let (index, service) = snap.gslb.service(lower.as_wire()).unwrap();
        let status = &snap.status.services[index];
        let t = median_ns(|i| {
            let (addr, loc) = located[i as usize % located.len()];
            let mut ctx = Ctx {
                regions: &snap.gslb.regions,
                status: &snap.status.regions,
                rechosen: status.rechosen,
                client: Client::located(addr, loc),
                shed: None,
            };
            black_box(select(&service.chain, status.candidates(rtype::A), &mut ctx));
        });
        let chain: Vec<&str> = service.chain.iter().map(|s| s.name()).collect();
        println!("{:<52} {t:>10.1}", format!("decision {} ({}), location known", name, chain.join("->")));
    }

    // Load steps: the test config plus two load-steered services, with us-east at 0.5,
    // eu-west at 0.8 (shed scales its weight) and ap-south at 0.95 (full).
    {
        use gslbd::gslb::Gslb;
        use gslbd::gslb::status::Status;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml");
        let text = std::fs::read_to_string(&path).unwrap()
            + "[services.\"shed.svc.test\"]\nregions = [\"us-east\", \"eu-west\", \"ap-south\"]\npolicy = [\"shed\", \"weighted\"]\n\
               [services.\"least.svc.test\"]\nregions = [\"us-east\", \"eu-west\", \"ap-south\"]\npolicy = [\"least-loaded\", \"weighted\"]\n";
        let cfg = gslbd::config::parse(&text, &path).expect("config with load services parses");
        let gslb = Gslb::build(&cfg.gslb, &snap.zones, None, &path).expect("services build");
        let mut regions = Status::initial(&gslb).regions;
        for (name, u) in [("us-east", 0.5), ("eu-west", 0.8), ("ap-south", 0.95)] {
            regions[gslb.region_id(name).unwrap() as usize].utilisation = Some(u);
        }
        let status = Status::build(&gslb, regions, None);
        for name in ["shed.svc.test.", "least.svc.test."] {
            let lower = gslbd::name::Name::parse(name, None).unwrap();
            let (index, service) = gslb.service(lower.as_wire()).unwrap();
            let st = &status.services[index];
            let t = median_ns(|i| {
                let (addr, loc) = located[i as usize % located.len()];
                let mut ctx = Ctx {
                    regions: &gslb.regions,
                    status: &status.regions,
                    rechosen: st.rechosen,
                    client: Client::located(addr, loc),
                    shed: None,
                };
                black_box(select(&service.chain, st.candidates(rtype::A), &mut ctx));
            });
            let chain: Vec<&str> = service.chain.iter().map(|s| s.name()).collect();
            println!("{:<52} {t:>10.1}", format!("decision {} ({}), loads known", name, chain.join("->")));
        }
    }

    let counters = metrics::dns_shard(0);
    let mut out = Vec::with_capacity(4096);
    let packets: Vec<Vec<u8>> = [[81, 2, 69], [216, 160, 83], [202, 196, 224], [1, 128, 0], [41, 0, 0]]
        .iter()
        .map(|a| query("geo.svc.test.", Some(*a)))
        .collect();
    let source: IpAddr = "127.0.0.1".parse().unwrap();
    let t = median_ns(|i| {
        let p = &packets[i as usize % packets.len()];
        black_box(gslbd::frontend::respond(p, source, Transport::Udp, &snap, &mut out, counters, None));
    });
    println!("{:<52} {t:>10.1}", "whole query: geo.svc.test. A with ECS");
    // As resolvers send them: ECS from thousands of client networks, so most locations are
    // not in the per-thread cache (bench/ecs-queries.pl makes the same mix for dnsperf).
    let many = many_networks();
    let t = median_ns(|i| {
        let p = &many[i as usize % many.len()];
        black_box(gslbd::frontend::respond(p, source, Transport::Udp, &snap, &mut out, counters, None));
    });
    println!("{:<52} {t:>10.1}", format!("whole query: geo A, ECS from {} networks", many.len()));
    let static_q = query("static.svc.test.", None);
    let t = median_ns(|_| {
        black_box(gslbd::frontend::respond(&static_q, source, Transport::Udp, &snap, &mut out, counters, None));
    });
    println!("{:<52} {t:>10.1}", "whole query: static A");
    let nx = query("nx123.svc.test.", None);
    let t = median_ns(|_| {
        black_box(gslbd::frontend::respond(&nx, source, Transport::Udp, &snap, &mut out, counters, None));
    });
    println!("{:<52} {t:>10.1}", "whole query: NXDOMAIN");

    // RRL on, at a rate never reached: every response goes through the limiter's table.
    // The clock is read once per 32 queries, as a UDP worker does once per batch.
    let rrl = gslbd::config::rrl::RrlConfig {
        responses_per_second: 1_000_000,
        errors_per_second: 1_000_000,
        ..Default::default()
    };
    let mut limiter = gslbd::frontend::rrl::Limiter::new(
        std::sync::Arc::new(rrl),
        gslbd::frontend::rrl::random_seed(),
        Instant::now(),
        None,
    );
    let t = median_ns(|i| {
        if i % 32 == 0 {
            limiter.tick(Instant::now());
        }
        let l = Some(&mut limiter);
        black_box(gslbd::frontend::respond(&static_q, source, Transport::Udp, &snap, &mut out, counters, l));
    });
    println!("{:<52} {t:>10.1}", "whole query: static A, RRL on (not limiting)");
    // 100,000 client /24s in turn: more than the 65,536 entries, so most queries replace one.
    let t = median_ns(|i| {
        if i % 32 == 0 {
            limiter.tick(Instant::now());
        }
        let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | ((i % 100_000) << 8)));
        let l = Some(&mut limiter);
        black_box(gslbd::frontend::respond(&static_q, client, Transport::Udp, &snap, &mut out, counters, l));
    });
    println!("{:<52} {t:>10.1}", "whole query: static A, RRL on, 100,000 /24s");
}
