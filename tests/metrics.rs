//! `/metrics` on the real binary: region and service series describe the serving snapshot,
//! so a reload that deletes a region or a service deletes its series too.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const ZONE: &str = "$ORIGIN m.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

/// Series lines (not comments) of `/metrics` that contain `needle`.
fn series_with(text: &str, needle: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with('#') && l.contains(needle)).map(String::from).collect()
}

#[test]
fn a_reload_that_deletes_a_region_and_a_service_deletes_their_series() {
    // "gone" is probed (a TCP check against a listener of ours) so it has every region
    // series, RTT included; "old.m.test." has answered, so it has answer counts.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new("metricsreload");
    dir.write("zones/m.test.zone", ZONE);
    dir.write("admin.token", "ops:tok\n");
    let keep = "[admin]\ntoken_file = \"admin.token\"\n\
                [regions.keep]\naddresses = [\"192.0.2.1\"]\n\
                [services.\"www.m.test\"]\nregions = [\"keep\"]\npolicy = \"weighted\"\n";
    let first = format!(
        "{keep}[regions.gone]\naddresses = [\"192.0.2.2\"]\n\
         [regions.gone.check]\ntype = \"tcp\"\naddress = \"{}\"\ninterval = \"100ms\"\nrise = 1\n\
         [services.\"old.m.test\"]\nregions = [\"gone\", \"keep\"]\npolicy = \"failover\"\n",
        target.local_addr().unwrap()
    );
    let cfg = dir.write("gslbd.toml", &first);
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    let metrics = || http(admin, "GET", "/metrics", None, None).1;
    udp(s.dns, &query("old.m.test.", RecordType::A));
    let start = Instant::now();
    while series_with(&metrics(), "gslbd_region_rtt_ewma_seconds{region=\"gone\"}").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "no RTT for region gone:\n{}", metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = metrics();
    for series in [
        "gslbd_region_up{region=\"gone\"} 1",
        "gslbd_region_weight{region=\"gone\"} 100",
        "gslbd_region_healthy{region=\"gone\"} 1",
        "gslbd_service_mode{service=\"old.m.test.\",mode=\"normal\"} 1",
        "gslbd_answers_total{service=\"old.m.test.\",region=\"gone\"} 1",
    ] {
        assert_eq!(series_with(&before, series).len(), 1, "{series} in:\n{before}");
    }

    dir.write("gslbd.toml", keep);
    let (code, body) = http(admin, "POST", "/v1/reload", Some("tok"), None);
    assert_eq!(code, 200, "{body}");
    let after = metrics();
    // Series of the state that was: none. (Counters of past events, such as probe results
    // and mode changes, are history and may stay.)
    for metric in [
        "gslbd_region_up{",
        "gslbd_region_weight{",
        "gslbd_region_healthy{",
        "gslbd_region_rtt_ewma_seconds{",
        "gslbd_service_mode{",
        "gslbd_answers_total{",
    ] {
        for l in series_with(&after, metric) {
            assert!(!l.contains("\"gone\"") && !l.contains("\"old.m.test.\""), "deleted but exported: {l}");
        }
    }
    // What remains is still there.
    for series in [
        "gslbd_region_up{region=\"keep\"} 1",
        "gslbd_service_mode{service=\"www.m.test.\",mode=\"normal\"} 1",
        "gslbd_answers_total{service=\"www.m.test.\",region=\"keep\"} 0",
    ] {
        assert_eq!(series_with(&after, series).len(), 1, "{series} in:\n{after}");
    }
    assert_eq!(series_with(&after, "gslbd_reload_last_success 1").len(), 1, "{after}");
    assert!(after.contains("gslbd_reloads_total{result=\"ok\"} 1\n"), "{after}");
}
