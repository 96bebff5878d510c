//! The demo's topology end to end: three regions, each a real HAProxy (from
//! deploy/demo/haproxy.cfg.in) in front of two backends, probed by gslbd running the demo's
//! own configuration (deploy/demo/gslbd.toml, with the probe addresses moved to free ports on
//! 127.0.0.21-23 so the tests and a running demo do not collide). Each test kills or stops
//! something and checks, as a DNS client in London, Seattle or Manila (EDNS Client Subnet),
//! that the answers move to the nearest healthy region within the prober's bound, and back.
//!
//! Needs `haproxy` (Debian package haproxy; tests/run.sh installs it). Without it every test
//! here fails saying what is missing, unless GSLBD_TEST_ALLOW_SKIP=1.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::time::Duration;

use common::demo::*;
use hickory_proto::rr::RecordType;

/// Everyone where the demo's geo map sends them while all regions are up.
fn assert_home(d: &Demo) {
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(SEATTLE)), ["127.0.0.11"], "Seattle");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(LONDON)), ["127.0.0.12"], "London");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"], "Manila");
    assert_eq!(d.answer("www.demo.test.", RecordType::AAAA, Some(TOKYO_V6)), ["2001:db8::13"], "Tokyo");
    assert_eq!(d.answer("db.demo.test.", RecordType::A, None), ["127.0.0.11"], "db: the first priority");
}

#[test]
fn killed_haproxy_moves_its_clients_to_the_nearest_healthy_region_and_back() {
    if !haproxy_installed() {
        return;
    }
    let mut d = Demo::start("demo-kill");
    assert_home(&d);

    d.region("us-east").kill_haproxy();
    // Seattle is nearer London (7,700 km) than Singapore (12,900 km); db fails over to the
    // second priority. Nobody else moves.
    let took = d.wait_answer("www.demo.test.", Some(SEATTLE), "127.0.0.12", PROBER_BOUND);
    d.wait_answer("db.demo.test.", None, "127.0.0.12", PROBER_BOUND);
    eprintln!("us-east HAProxy killed: Seattle moved to eu-west in {took:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(LONDON)), ["127.0.0.12"]);
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);
    for _ in 0..50 {
        assert!(!d.api_counts(1).contains_key("127.0.0.11"), "weighted answers still include the dead region");
    }

    // Started again: two good probes (rise 2) and the clients come back.
    d.region("us-east").start_haproxy();
    let took = d.wait_answer("www.demo.test.", Some(SEATTLE), "127.0.0.11", PROBER_BOUND);
    eprintln!("us-east HAProxy restarted: Seattle back in {took:?}");
    d.wait_answer("db.demo.test.", None, "127.0.0.11", PROBER_BOUND);
    assert_home(&d);
}

#[test]
fn region_whose_backends_all_die_fails_its_health_url_and_loses_its_clients() {
    if !haproxy_installed() {
        return;
    }
    let mut d = Demo::start("demo-backends");
    assert_home(&d);

    // HAProxy itself stays up; only its backends go. Its /health turns 503 ...
    d.region("eu-west").stop_backends();
    let took = d.region("eu-west").wait_health(503, HAPROXY_BOUND + Duration::from_secs(2));
    eprintln!("eu-west backends stopped: /health 503 after {took:?}");
    // ... and London goes to the nearest healthy region: Washington (5,900 km), not
    // Singapore (10,900 km).
    let took = d.wait_answer("www.demo.test.", Some(LONDON), "127.0.0.11", PROBER_BOUND);
    eprintln!("eu-west unhealthy: London moved to us-east in {took:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(SEATTLE)), ["127.0.0.11"]);
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);

    // One backend back is enough for HAProxy, and then for gslbd.
    d.region("eu-west").restart_backends();
    d.region("eu-west").wait_health(200, HAPROXY_BOUND + Duration::from_secs(2));
    let took = d.wait_answer("www.demo.test.", Some(LONDON), "127.0.0.12", PROBER_BOUND);
    eprintln!("eu-west backends back: London returned in {took:?}");
    assert_home(&d);
}
#[test]
fn drained_region_leaves_weighted_and_geo_answers_until_undrained() {
    if !haproxy_installed() {
        return;
    }
    let d = Demo::start("demo-drain");
    let before = d.api_counts(300);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["127.0.0.11", "127.0.0.12", "127.0.0.13"], "{before:?}");

    // Changes need the demo's token.
    let (status, _) = d.admin("POST", "/v1/regions/ap-south/drain", None, None);
    assert_eq!(status, 401, "drain without a token");
    let (status, body) = d.admin("POST", "/v1/regions/ap-south/drain", Some(&d.token), None);
    assert_eq!(status, 200, "drain: {body}");

    let drained = d.api_counts(300);
    assert_eq!(
        drained.keys().collect::<Vec<_>>(),
        ["127.0.0.11", "127.0.0.12"],
        "a drained region was answered: {drained:?}"
    );
    // Drained, every policy skips it while others are healthy: Manila goes to the nearest
    // other region, London (10,700 km), not Washington (13,700 km).
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.12"]);
    // The status says why: healthy, but drained by an operator.
    let (_, body) = d.admin("GET", "/v1/status", None, None);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let region = status["regions"].as_array().unwrap().iter().find(|r| r["name"] == "ap-south").unwrap();
    assert_eq!(region["up"], true, "{region}");
    assert_eq!(region["override"]["drained"], true, "{region}");

    let (status, body) = d.admin("POST", "/v1/regions/ap-south/undrain", Some(&d.token), None);
    assert_eq!(status, 200, "undrain: {body}");
    let after = d.api_counts(300);
    assert!(after.get("127.0.0.13").is_some_and(|&n| n > 20), "ap-south did not come back: {after:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);
}
