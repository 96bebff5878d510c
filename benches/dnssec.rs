//! DNSSEC costs: a whole query (decode, answer, sign from the cache, encode) with DO=1
//! against the same query with DO=0, and fresh signatures per second (the signing key
//! alone, and whole queries for new names). `cargo bench --bench dnssec`; figures go into
//! bench/README.md. Plain timing loops, medians, as benches/policy.rs.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is a failed setup

mod common;
use common::median_ns;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use gslbd::answer::Transport;
use gslbd::dnssec::{self, Signer, Validity, ZoneKeys};
use gslbd::metrics;
use gslbd::name::Name;
use gslbd::snapshot::{Source, load};
use gslbd::zone::store::RRset;

fn query(name: &str, dnssec_ok: bool) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    p
}

fn main() {
    let dir = std::env::temp_dir().join(format!("gslbd-bench-dnssec-{}", std::process::id()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dnssec");
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let geoip = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-city.mmdb");
    let cfg = std::fs::read_to_string(src.join("gslbd.toml")).unwrap();
    std::fs::write(dir.join("gslbd.toml"), cfg.replace("../../geoip/test-city.mmdb", geoip.to_str().unwrap())).unwrap();
    std::fs::copy(src.join("zones/sec.test.zone"), dir.join("zones/sec.test.zone")).unwrap();
    let apex = Name::parse("sec.test.", None).unwrap();
    dnssec::keygen(&dir.join("keys"), &apex, dnssec::ALG_ECDSAP256SHA256).unwrap();
    let source = Source { config: Some(dir.join("gslbd.toml")), ..Default::default() };
    let (_, snap) = load(&source).unwrap();

    println!("{:<56} {:>10}", "case", "ns/query");
    let counters = metrics::dns_shard(0);
    let mut out = Vec::with_capacity(4096);
    let client: IpAddr = "127.0.0.1".parse().unwrap();
    let mut signer = Signer::new(u32::MAX, dnssec::cache::DEFAULT_CAPACITY);
    // One UDP query through the signing path (no rate limiter).
    let signed = |p: &[u8], signer: &mut Signer, out: &mut Vec<u8>| {
        black_box(gslbd::frontend::respond_signed(p, client, Transport::Udp, &snap, out, counters, None, Some(signer)))
    };
    for name in ["static.sec.test.", "fo.sec.test.", "geo.sec.test."] {
        for dnssec_ok in [false, true] {
            let p = query(name, dnssec_ok);
            let t = median_ns(200_000, 15, |_| {
                signed(&p, &mut signer, &mut out);
            });
            let what = if dnssec_ok { "DO=1, signature from the cache" } else { "DO=0" };
            println!("{:<56} {t:>10.1}", format!("whole query: {name} A, {what}"));
        }
    }
    // The DO=0 path of a server with keys against respond() without a signer at all.
    let p = query("static.sec.test.", false);
    let t = median_ns(200_000, 15, |_| {
        black_box(gslbd::frontend::respond(&p, client, Transport::Udp, &snap, &mut out, counters, None));
    });
    println!("{:<56} {t:>10.1}", "whole query: static.sec.test. A, DO=0, no signer");

    // Fresh signatures: new names every query (compact denial of a random name).
    let names: Vec<Vec<u8>> = (0..20_000).map(|i| query(&format!("r{i}.sec.test."), true)).collect();
    // A counter across runs: every query is a name not asked before (not in the cache).
    let mut next = 0usize;
    let t = median_ns(2_000, 5, |_| {
        next += 1;
        signed(&names[next % names.len()], &mut signer, &mut out);
    });
    println!("{:<56} {t:>10.1}  ({:.0}/s per core)", "whole query: new name, DO=1, fresh NSEC signature", 1e9 / t);

    // The key alone, per algorithm.
    for alg in [dnssec::ALG_ECDSAP256SHA256, dnssec::ALG_ED25519] {
        let kdir = dir.join(format!("alg{alg}"));
        let key = dnssec::keygen(&kdir, &apex, alg).unwrap();
        let zone = ZoneKeys { apex: apex.clone(), dnskey: RRset::new(48, 3600, [&key.dnskey[..]]), keys: vec![key] };
        let set = RRset::new(1, 60, [&[192, 0, 2, 1][..]]);
        let mut canonical = Vec::new();
        dnssec::canonical_rrset(b"\x03www\x03sec\x04test\x00", &set, 60, &mut canonical);
        let v = Validity::now();
        let t = median_ns(2_000, 5, |_| {
            black_box(dnssec::sign(&zone, &canonical, v));
        });
        println!(
            "{:<56} {t:>10.1}  ({:.0}/s per core)",
            format!("one fresh RRSIG, {}", dnssec::algorithm_name(alg)),
            1e9 / t
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
