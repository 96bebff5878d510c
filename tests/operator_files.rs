//! The operator's files in deploy/: the Prometheus alert rules pass `promtool check rules`
//! (Debian package prometheus), the Grafana dashboard is well-formed, and every gslbd metric
//! either names is one a real gslbd exports on /metrics.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `gslbd_...` metric name in `text` (histogram series reduced to the family name).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("gslbd_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            names.insert(family.to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// A gslbd with a checked region, a drained one, RRL on and a little traffic, so every
/// family of metric has series; returns its /metrics text.
fn exported_metrics() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = TempDir::new("operator-files");
    dir.write(
        "zones/svc.test.zone",
        "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    dir.write("admin.token", "ops:operator-files\n");
    let config = dir.write(
        "gslbd.toml",
        &format!(
            "[zones]\ndirectory = \"zones\"\n[admin]\ntoken_file = \"admin.token\"\n[dns.rrl]\nresponses_per_second = 100\n\
             [regions.checked]\naddresses = [\"192.0.2.1\"]\n[regions.checked.check]\ntype = \"tcp\"\naddress = \"{}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
             [regions.other]\naddresses = [\"192.0.2.2\"]\n\
             [regions.other.load]\ntype = \"json\"\nurl = \"http://{}/load\"\npointer = \"/u\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
             [services.\"app.svc.test\"]\nregions = [\"checked\", \"other\"]\npolicy = \"failover\"\n",
            listener.local_addr().unwrap(),
            serve_json("{\"u\": 0.5}")
        ),
    );
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    for _ in 0..5 {
        udp(s.dns, &query("app.svc.test.", RecordType::A));
    }
    // A mode change (a region forced down, then back) and a health verdict.
    http(admin, "POST", "/v1/regions/other/force", Some("operator-files"), Some(r#"{"state": "down"}"#));
    http(admin, "POST", "/v1/regions/other/force", Some("operator-files"), Some(r#"{"state": "auto"}"#));
    http(admin, "POST", "/v1/reload", Some("operator-files"), None);
    let deadline = Instant::now() + WAIT;
    loop {
        let text = http(admin, "GET", "/metrics", None, None).1;
        if text.contains("gslbd_health_transitions_total{")
            && text.contains("gslbd_probe_duration_seconds_bucket")
            && text.contains("gslbd_region_utilisation{")
        {
            return text;
        }
        assert!(Instant::now() < deadline, "no probe metrics after {WAIT:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alert_rules_pass_promtool_and_name_exported_metrics() {
    let rules = repo("deploy/prometheus/alerts.yml");
    let out = match Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        Ok(out) => out,
        Err(_) => return missing_tool("promtool (Debian package prometheus)"),
    };
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules failed:\n{said}");
    assert!(said.contains("SUCCESS: 9 rules found"), "{said}");
    let named = metric_names(&std::fs::read_to_string(&rules).unwrap());
    let exported = metric_names(&exported_metrics());
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(missing.is_empty(), "alerts.yml names metrics gslbd does not export: {missing:?}");
}

#[test]
fn the_dashboard_is_well_formed_and_names_exported_metrics() {
    let path = repo("deploy/grafana/gslbd.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "gslbd-overview");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    for p in panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(p["id"].as_u64().expect("numeric id")), "duplicate panel id in {title}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{title}: gridPos {g}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let e = t["expr"].as_str().expect("expr");
            assert_eq!(e.matches('(').count(), e.matches(')').count(), "{title}: unbalanced {e}");
            exprs += e;
            exprs.push('\n');
        }
    }
    // What the dashboard must show (issue 15): answer share, region up and health, service
    // mode, rcodes, probe RTT and failures, reloads.
    for needed in [
        "gslbd_answers_total",
        "gslbd_region_up",
        "gslbd_region_healthy",
        "gslbd_service_mode",
        "gslbd_dns_responses_total",
        "gslbd_region_rtt_ewma_seconds",
        "gslbd_probe_results_total",
        "gslbd_reloads_total",
        "gslbd_region_utilisation",
        "gslbd_service_skew",
    ] {
        assert!(exprs.contains(needed), "the dashboard does not show {needed}");
    }
    let named = metric_names(&exprs);
    let exported = metric_names(&exported_metrics());
    let missing: Vec<_> = named.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard names metrics gslbd does not export: {missing:?}");
}
