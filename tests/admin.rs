//! The admin API against the real binary, over HTTP and DNS together: overrides move the
//! answers at once and survive restarts and kill -9; explain agrees with dig; metrics parse
//! and move; every bad request gets the right 4xx and changes nothing.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const OPS: Option<&str> = Some("test-token-ops");

fn config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml").to_str().unwrap().to_string()
}

fn first_address(s: &Server, name: &str, ecs: Option<&str>) -> String {
    first_a(&udp(s.dns, &with_edns(query(name, RecordType::A), 1232, ecs)))
}

fn shares(s: &Server, name: &str, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(first_address(s, name, None)).or_default() += 1;
    }
    counts
}

/// Polls until `f` is true; panics after one second (the API's promise).
fn within_a_second(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within one second");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_shows_services_regions_and_answer_sets() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let (code, body) = http(admin, "GET", "/v1/status", None, None);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    let svc = v["services"].as_array().unwrap().iter().find(|x| x["name"] == "weighted.svc.test.").unwrap();
    assert_eq!(svc["policy"], serde_json::json!(["weighted"]));
    assert_eq!(svc["mode"], "normal");
    assert_eq!(svc["answer_set"]["A"], serde_json::json!(["us-east", "eu-west", "ap-south"]));
    let region = v["regions"].as_array().unwrap().iter().find(|x| x["name"] == "eu-west").unwrap();
    assert_eq!(region["weight"]["configured"], 30);
    assert_eq!(region["health"], "unchecked");
    assert_eq!(region["up"], true);
    assert_eq!(http(admin, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(admin, "GET", "/readyz", None, None), (200, "ready\n".into()));
}

#[test]
fn weight_change_moves_the_distribution_and_drain_removes_a_region() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    // us-east 50 -> 0 by weight: it leaves the weighted answers at once.
    let (code, body) = http(admin, "PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": 0}"#));
    assert_eq!(code, 200, "{body}");
    within_a_second("weight 0", || !shares(&s, "weighted.svc.test.", 50).contains_key("192.0.2.11"));
    // eu-west 30 -> 300: now about 300 / 320 of the answers.
    http(admin, "PUT", "/v1/regions/eu-west/weight", OPS, Some(r#"{"weight": 300}"#));
    let counts = shares(&s, "weighted.svc.test.", 1000);
    let eu = counts.get("192.0.2.12").copied().unwrap_or(0);
    assert!((890..=985).contains(&eu), "eu-west {eu} of 1000: {counts:?}");
    // Drain eu-west: only ap-south is left.
    let (code, _) = http(admin, "POST", "/v1/regions/eu-west/drain", OPS, None);
    assert_eq!(code, 200);
    within_a_second("drain", || shares(&s, "weighted.svc.test.", 30).keys().all(|a| a == "192.0.2.13"));
    // The failover service loses its first choice too.
    assert_eq!(first_address(&s, "failover.svc.test.", None), "192.0.2.13");
    // Undrain: back, and status shows who did it.
    http(admin, "POST", "/v1/regions/eu-west/undrain", OPS, None);
    within_a_second("undrain", || shares(&s, "weighted.svc.test.", 50).contains_key("192.0.2.12"));
    let v = json(&http(admin, "GET", "/v1/status", None, None).1);
    let eu = v["regions"].as_array().unwrap().iter().find(|x| x["name"] == "eu-west").unwrap();
    assert_eq!(eu["weight"]["effective"], 300);
    assert_eq!(eu["override"]["updated_by"], "ops");
    // The audit log has every change, with the token's id and never the token.
    let audit = std::fs::read_to_string(s.state_dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 4, "{audit}");
    assert!(audit.contains("\"action\":\"drain\"") && audit.contains("\"token\":\"ops\""), "{audit}");
    assert!(!audit.contains("test-token-ops"), "the secret leaked into the audit log");
    assert!(!s.log().contains("test-token-ops"), "the secret leaked into the log");
}

#[test]
fn force_down_and_back_to_auto_and_expiry() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    assert_eq!(first_address(&s, "failover.svc.test.", None), "192.0.2.11");
    let (code, body) = http(admin, "POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    within_a_second("force down", || first_address(&s, "failover.svc.test.", None) == "192.0.2.12");
    let v = json(&http(admin, "GET", "/v1/status", None, None).1);
    let svc = v["services"].as_array().unwrap().iter().find(|x| x["name"] == "failover.svc.test.").unwrap();
    assert_eq!(svc["mode"], "degraded");
    http(admin, "POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "auto"}"#));
    within_a_second("auto", || first_address(&s, "failover.svc.test.", None) == "192.0.2.11");
    // A force with a TTL ends by itself. Expiry is in whole seconds of the clock, so a TTL of
    // 1 s may last only a moment: 2 s lasts at least one, time to see it in the answers.
    http(admin, "POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "down", "ttl_seconds": 2}"#));
    within_a_second("force with ttl", || first_address(&s, "failover.svc.test.", None) == "192.0.2.12");
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_address(&s, "failover.svc.test.", None) != "192.0.2.11" {
        assert!(Instant::now() < deadline, "the forced state did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.wait_log("forced state expired");
}

#[test]
fn overrides_survive_restart_and_kill_9() {
    let mut s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    assert_eq!(http(admin, "POST", "/v1/regions/us-east/drain", OPS, None).0, 200);
    // kill -9 right after the 200: nothing may be lost.
    std::process::Command::new("kill").args(["-9", &s.pid().to_string()]).status().unwrap();
    s.wait_exit();
    let state = std::mem::replace(&mut s.state_dir, TempDir::new("unused"));
    let s2 = Server::try_start_in(&["--config", &config()], state).unwrap();
    assert_eq!(first_address(&s2, "failover.svc.test.", None), "192.0.2.12", "drain lost by kill -9");
    s2.wait_log("restored operator overrides");
    // And a clean restart keeps a weight too.
    let admin = s2.admin.unwrap();
    assert_eq!(http(admin, "PUT", "/v1/regions/ap-south/weight", OPS, Some(r#"{"weight": 7}"#)).0, 200);
    let mut s2 = s2;
    s2.signal("TERM");
    assert_eq!(s2.wait_exit(), Some(0));
    let state = std::mem::replace(&mut s2.state_dir, TempDir::new("unused"));
    let s3 = Server::try_start_in(&["--config", &config()], state).unwrap();
    let v = json(&http(s3.admin.unwrap(), "GET", "/v1/status", None, None).1);
    let ap = v["regions"].as_array().unwrap().iter().find(|x| x["name"] == "ap-south").unwrap();
    assert_eq!(ap["weight"]["effective"], 7);
    let us = v["regions"].as_array().unwrap().iter().find(|x| x["name"] == "us-east").unwrap();
    assert_eq!(us["override"]["drained"], true);
}

#[test]
fn bad_requests_get_the_right_4xx_and_change_nothing() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let before = http(admin, "GET", "/v1/status", None, None).1;
    let strip = |b: &str| {
        let mut v = json(b);
        v["uptime_seconds"] = serde_json::json!(0);
        v
    };
    // (method, path, token, body, status, field named in the error)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u16, &'a str);
    let cases: &[Case] = &[
        ("PUT", "/v1/regions/us-east/weight", None, Some(r#"{"weight": 1}"#), 401, "authorization"),
        ("PUT", "/v1/regions/us-east/weight", Some("wrong"), Some(r#"{"weight": 1}"#), 401, "authorization"),
        ("PUT", "/v1/regions/nowhere/weight", OPS, Some(r#"{"weight": 1}"#), 404, "name"),
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": 1000001}"#), 400, "weight"),
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": -1}"#), 400, "weight"),
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": "heavy"}"#), 400, "weight"),
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{}"#), 400, "weight"),
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": 1, "colour": 2}"#), 400, "colour"),
        ("POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "sideways"}"#), 400, "state"),
        // "force" (cluster mode's guard-rail override) is no field without [cluster].
        ("PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": 1, "force": true}"#), 400, "force"),
        ("POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "up", "force": true}"#), 400, "force"),
        ("POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "down", "ttl_seconds": 0}"#), 400, "ttl_seconds"),
        ("POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "auto", "ttl_seconds": 5}"#), 400, "ttl_seconds"),
        ("POST", "/v1/regions/nowhere/drain", OPS, None, 404, "name"),
        ("GET", "/v1/explain", None, None, 400, "name"),
        ("GET", "/v1/explain?name=weighted.svc.test&type=BOGUS", None, None, 400, "type"),
        ("GET", "/v1/explain?name=weighted.svc.test&ecs=1.2.3.4/99", None, None, 400, "ecs"),
    ];
    for (method, path, token, body, want, field) in cases {
        let (code, text) = http(admin, method, path, *token, *body);
        assert_eq!(code, *want, "{method} {path} {body:?}: {text}");
        let v = json(&text);
        assert_eq!(v["field"], *field, "{method} {path} {body:?}: {text}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Not JSON; too large.
    let (code, text) = http(admin, "PUT", "/v1/regions/us-east/weight", OPS, Some("{weight"));
    assert_eq!(code, 400, "{text}");
    let big = format!(r#"{{"weight": 1, "pad": "{}"}}"#, "x".repeat(10_000));
    assert_eq!(http(admin, "PUT", "/v1/regions/us-east/weight", OPS, Some(&big)).0, 413);
    // Nothing changed: same status, no saved overrides, no audit lines.
    assert_eq!(strip(&http(admin, "GET", "/v1/status", None, None).1), strip(&before));
    assert!(!s.state_dir.path().join("overrides.json").exists());
    assert!(!s.state_dir.path().join("audit.log").exists());
}

/// Every address of one type in the answer to `name`, sorted, and the number of records in
/// AUTHORITY.
fn family_answer(s: &Server, name: &str, qtype: RecordType) -> (Vec<String>, usize) {
    let r = udp(s.dns, &query(name, qtype));
    let mut a: Vec<String> = r.answers.iter().map(|x| x.data.to_string()).collect();
    a.sort();
    (a, r.authorities.len())
}

#[test]
fn an_operators_force_or_drain_wins_over_per_family_fail_open() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let v6 = || family_answer(&s, "mixfam.gslb.test.", RecordType::AAAA);
    let v4 = || family_answer(&s, "mixfam.gslb.test.", RecordType::A);
    assert_eq!(v6(), (vec!["2001:db8::61".to_string()], 0));
    // v6a forced down: it is the only IPv6 region, but the operator's choice wins; AAAA gets
    // NODATA with the SOA while ap-v4 keeps serving A.
    let (code, body) = http(admin, "POST", "/v1/regions/v6a/force", OPS, Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    assert_eq!(v6(), (vec![], 1));
    assert_eq!(v4(), (vec!["192.0.2.62".to_string()], 0));
    let status = json(&http(admin, "GET", "/v1/status", None, None).1);
    let svc = status["services"].as_array().unwrap().iter().find(|x| x["name"] == "mixfam.gslb.test.").unwrap();
    assert_eq!(svc["answer_set"], serde_json::json!({"A": ["ap-v4"], "AAAA": []}), "{svc}");
    let v = json(&http(admin, "GET", "/v1/explain?name=mixfam.gslb.test&type=AAAA", None, None).1);
    let r = v["service"]["regions"].as_array().unwrap().iter().find(|r| r["name"] == "v6a").unwrap();
    assert_eq!(r["skipped"], "forced down by the operator", "{v}");
    assert_eq!(v["answer"]["records"], serde_json::json!([]), "{v}");
    // ANY shows what the name owns now: its A record.
    assert_eq!(family_answer(&s, "mixfam.gslb.test.", RecordType::ANY), (vec!["192.0.2.62".to_string()], 0));
    // A drain is the operator's choice too: v6a drained while ap-v4 can take clients.
    http(admin, "POST", "/v1/regions/v6a/force", OPS, Some(r#"{"state": "auto"}"#));
    assert_eq!(v6(), (vec!["2001:db8::61".to_string()], 0));
    http(admin, "POST", "/v1/regions/v6a/drain", OPS, None);
    assert_eq!(v6(), (vec![], 1));
    http(admin, "POST", "/v1/regions/v6a/undrain", OPS, None);
    assert_eq!(v6(), (vec!["2001:db8::61".to_string()], 0));
    // A service of only that region keeps answering it when drained: nothing else can.
    http(admin, "POST", "/v1/regions/v6a/drain", OPS, None);
    assert_eq!(family_answer(&s, "v6only.gslb.test.", RecordType::AAAA), (vec!["2001:db8::61".to_string()], 0));
}

#[test]
fn explain_agrees_with_dig() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    for (ecs, region) in
        [("81.2.69.0/24", "eu-west"), ("202.196.224.0/24", "ap-south"), ("216.160.83.0/24", "ap-south")]
    {
        let (code, body) = http(admin, "GET", &format!("/v1/explain?name=geo.svc.test&type=A&ecs={ecs}"), None, None);
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        let out = dig(s.dns, &["geo.svc.test", "A", &format!("+subnet={ecs}"), "+short"]);
        let dig_addr: std::net::IpAddr = out.trim().parse().unwrap_or_else(|_| panic!("dig +short: {out:?}"));
        let records = v["answer"]["records"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{body}");
        let explained = records[0].as_str().unwrap().rsplit(['\t', ' ']).next().unwrap();
        assert_eq!(explained, dig_addr.to_string(), "explain {records:?} vs dig {dig_addr}");
        assert_eq!(v["service"]["chosen"], serde_json::json!([region]), "{body}");
        assert_eq!(v["answer"]["ecs_scope"], ecs.split_once('/').unwrap().1.parse::<u8>().unwrap());
        assert_eq!(v["client"]["from"], "ecs");
        assert_eq!(v["service"]["steps"][0]["policy"], "geo");
    }
    // Why a region is skipped.
    http(admin, "POST", "/v1/regions/eu-west/drain", OPS, None);
    let v = json(&http(admin, "GET", "/v1/explain?name=geo.svc.test&ecs=81.2.69.0/24", None, None).1);
    let eu = v["service"]["regions"].as_array().unwrap().iter().find(|r| r["name"] == "eu-west").unwrap();
    assert!(eu["skipped"].as_str().unwrap().starts_with("drained"), "{v}");
    assert_eq!(
        v["service"]["chosen"],
        serde_json::json!(["us-east"]),
        "nearest to London once eu-west is drained: {v}"
    );
    // Static names say so.
    let v = json(&http(admin, "GET", "/v1/explain?name=static.svc.test", None, None).1);
    assert!(v["reason"].as_str().unwrap().starts_with("static data of zone svc.test."), "{v}");
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = http(admin, "GET", "/metrics", None, None).1;
    for _ in 0..20 {
        first_address(&s, "failover.svc.test.", None);
    }
    udp(s.dns, &query("nothing.svc.test.", RecordType::A));
    let (code, text) = http(admin, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    // Every line is a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad value: {line}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("gslbd_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        assert_eq!(series.matches('{').count(), series.matches('}').count(), "{line}");
    }
    let answers = "gslbd_answers_total{service=\"failover.svc.test.\",region=\"us-east\"}";
    assert_eq!(value(&text, answers) - value(&before, answers), 20.0, "{text}");
    let noerror = "gslbd_dns_responses_total{transport=\"udp\",rcode=\"NOERROR\",qtype=\"A\"}";
    assert!(value(&text, noerror) - value(&before, noerror) >= 20.0);
    assert!(value(&text, "gslbd_dns_responses_total{transport=\"udp\",rcode=\"NXDOMAIN\",qtype=\"A\"}") >= 1.0);
    assert_eq!(value(&text, "gslbd_region_up{region=\"us-east\"}"), 1.0);
    assert_eq!(value(&text, "gslbd_service_mode{service=\"weighted.svc.test.\",mode=\"normal\"}"), 1.0);
    assert!(text.contains("gslbd_build_info{version=\""));
}

#[test]
fn reload_through_the_api_reports_errors_and_keeps_serving() {
    let dir = TempDir::new("apireload");
    dir.write("zones/r.test.zone", "$ORIGIN r.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.1\n");
    dir.write("admin.token", "ops:tok\n");
    let cfg = dir.write("gslbd.toml", "[admin]\ntoken_file = \"admin.token\"\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    dir.write("zones/r.test.zone", "$ORIGIN r.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.300\n");
    let (code, body) = http(admin, "POST", "/v1/reload", Some("tok"), None);
    assert_eq!(code, 422, "{body}");
    let v = json(&body);
    // One object per error, with its place and message apart.
    let e = &v["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("zones/r.test.zone"), "{body}");
    assert_eq!((e["line"].as_u64(), e["column"].as_u64()), (Some(6), Some(10)), "{body}");
    assert_eq!(e["message"], "bad A record data: expected an IPv4 address, got \"192.0.2.300\"", "{body}");
    assert!(e["hint"].is_null(), "{body}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(first_address(&s, "www.r.test.", None), "192.0.2.1");
    // A config error carries its hint; an error about a whole file has no line or column.
    dir.write("gslbd.toml", "[admin]\ntoken_file = \"admin.token\"\n[dns]\nudp_payload = 70000\n");
    let (code, body) = http(admin, "POST", "/v1/reload", Some("tok"), None);
    assert_eq!(code, 422, "{body}");
    let e = &json(&body)["errors"][0];
    assert_eq!((e["line"].as_u64(), e["column"].as_u64()), (Some(4), Some(15)), "{body}");
    assert_eq!(e["message"], "dns.udp_payload: 70000 is out of range", "{body}");
    assert_eq!(e["hint"], "use 512..=65535; 1232 avoids IP fragmentation", "{body}");
    dir.write("gslbd.toml", "[admin]\ntoken_file = \"admin.token\"\n[zones]\ndirectory = \"empty\"\n");
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let (code, body) = http(admin, "POST", "/v1/reload", Some("tok"), None);
    assert_eq!(code, 422, "{body}");
    let e = &json(&body)["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("empty"), "{body}");
    assert!(e["line"].is_null() && e["column"].is_null(), "{body}");
    assert_eq!(e["message"], "no zone files (*.zone) to serve", "{body}");
    dir.write("gslbd.toml", "[admin]\ntoken_file = \"admin.token\"\n");
    dir.write("zones/r.test.zone", "$ORIGIN r.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A 192.0.2.2\n");
    assert_eq!(http(admin, "POST", "/v1/reload", Some("tok"), None).0, 200);
    assert_eq!(first_address(&s, "www.r.test.", None), "192.0.2.2");
    assert_eq!(http(admin, "POST", "/v1/reload", None, None).0, 401);
}

#[test]
fn all_down_modes_fail_open_fallback_nodata_servfail() {
    use hickory_proto::op::ResponseCode;
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let all = |name: &str| {
        let r = udp(s.dns, &query(name, RecordType::A));
        let mut a: Vec<String> = r.answers.iter().map(|x| x.data.to_string()).collect();
        a.sort();
        (r.metadata.response_code, a, r.answers.first().map(|x| x.ttl), r.authorities.len())
    };
    assert_eq!(all("failopen.svc.test.").1, ["192.0.2.41", "192.0.2.42", "192.0.2.43"]);
    // One down: degraded, two answered, the degraded TTL.
    http(admin, "POST", "/v1/regions/solo-c/force", OPS, Some(r#"{"state": "down"}"#));
    let (_, a, ttl, _) = all("failopen.svc.test.");
    assert_eq!((a, ttl), (vec!["192.0.2.41".to_string(), "192.0.2.42".to_string()], Some(5)));
    // The same with min_healthy = "50%": 2 of 3 healthy is enough ...
    assert_eq!(all("minfrac.svc.test.").1, ["192.0.2.41", "192.0.2.42"]);
    // Two forced down: fewer than min_healthy = 2, so the service fails open, but fail-open is
    // for health verdicts that may be wrong: the regions the operator forced down stay out.
    http(admin, "POST", "/v1/regions/solo-b/force", OPS, Some(r#"{"state": "down"}"#));
    assert_eq!(all("failopen.svc.test.").1, ["192.0.2.41"]);
    // ... and 1 of 3 is not enough for "50%" either.
    assert_eq!(all("minfrac.svc.test.").1, ["192.0.2.41"]);
    // Every region forced down: the operator withdrew them all; fail-open does not undo it.
    http(admin, "POST", "/v1/regions/solo-a/force", OPS, Some(r#"{"state": "down"}"#));
    let (rc, a, _, auth) = all("failopen.svc.test.");
    assert_eq!((rc, a.len(), auth), (ResponseCode::NoError, 0, 1), "NODATA with the SOA, not the forced regions");
    assert_eq!(all("fallback.svc.test.").1, ["203.0.113.99"]);
    let (rc, a, _, auth) = all("nodata.svc.test.");
    assert_eq!((rc, a.len(), auth), (ResponseCode::NoError, 0, 1), "NODATA with the SOA");
    assert_eq!(all("servfail.svc.test.").0, ResponseCode::ServFail);
    // Each transition was logged once and counted, however many queries and status
    // rebuilds came after it: 50 more queries per service, and one more rebuild (a force
    // to the state solo-b is already in).
    for _ in 0..50 {
        for name in ["failopen.svc.test.", "fallback.svc.test.", "nodata.svc.test.", "servfail.svc.test."] {
            all(name);
        }
    }
    http(admin, "POST", "/v1/regions/solo-b/force", OPS, Some(r#"{"state": "down"}"#));
    all("nodata.svc.test.");
    let mode_lines = |service: &str, to: &str| {
        s.log()
            .lines()
            .filter(|l| {
                l.contains("service mode")
                    && l.contains(&format!("service={service}"))
                    && l.contains(&format!("to=\"{to}\""))
            })
            .count()
    };
    s.wait_log("to=\"all-down\"");
    let log = s.log();
    for (service, to) in [
        ("failopen.svc.test.", "degraded"),
        ("failopen.svc.test.", "fail-open"),
        ("nodata.svc.test.", "all-down"),
        ("servfail.svc.test.", "all-down"),
    ] {
        assert_eq!(mode_lines(service, to), 1, "{service} -> {to}: one log line per transition:\n{log}");
    }
    let metrics = http(admin, "GET", "/metrics", None, None).1;
    for series in [
        "gslbd_service_mode{service=\"servfail.svc.test.\",mode=\"all-down\"} 1\n",
        "gslbd_service_mode_changes_total{service=\"failopen.svc.test.\",mode=\"degraded\"} 1\n",
        "gslbd_service_mode_changes_total{service=\"failopen.svc.test.\",mode=\"fail-open\"} 1\n",
        "gslbd_service_mode_changes_total{service=\"nodata.svc.test.\",mode=\"all-down\"} 1\n",
    ] {
        assert!(metrics.contains(series), "{series}{metrics}");
    }
    // Back up: normal again.
    http(admin, "POST", "/v1/regions/solo-a/force", OPS, Some(r#"{"state": "auto"}"#));
    assert_eq!(all("fallback.svc.test.").1, ["192.0.2.41"]);
}

#[test]
fn slow_or_silent_clients_cannot_hold_the_api() {
    use std::io::{Read, Write};
    let dir = TempDir::new("slowapi");
    dir.write(
        "zones/r.test.zone",
        "$ORIGIN r.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    let cfg = dir.write("gslbd.toml", "[admin]\nrequest_timeout = \"1s\"\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    let started = Instant::now();
    // Silent, and trickling a header one byte at a time: both cut off after about 1 s.
    let mut silent = std::net::TcpStream::connect(admin).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut slow = std::net::TcpStream::connect(admin).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 256];
    let mut slow_closed = false;
    for b in b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        if slow.write_all(&[*b]).is_err() || matches!(slow.read(&mut buf), Ok(0)) {
            slow_closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)), "silent connection still open");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The trickle makes progress every 150 ms, so only the request timeout (1 s) ends it:
    // either the connection is closed or a 408 comes back.
    if !slow_closed {
        slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let n = slow.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.contains("408"), "{text}");
    }
    // The API still answers.
    assert_eq!(http(admin, "GET", "/healthz", None, None).0, 200);
}

#[test]
fn reads_can_require_a_token_but_liveness_stays_open() {
    let dir = TempDir::new("readauth");
    dir.write(
        "zones/r.test.zone",
        "$ORIGIN r.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    dir.write("admin.token", "ops:tok\n");
    let cfg = dir.write("gslbd.toml", "[admin]\ntoken_file = \"admin.token\"\nread_requires_token = true\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    for path in ["/v1/status", "/metrics", "/v1/explain?name=ns1.r.test"] {
        assert_eq!(http(admin, "GET", path, None, None).0, 401, "{path} without a token");
        assert_eq!(http(admin, "GET", path, Some("tok"), None).0, 200, "{path} with the token");
    }
    assert_eq!(http(admin, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(admin, "GET", "/readyz", None, None).0, 200);
}

/// A region whose weight is cut takes, for the next minute, several times its new intended
/// share of answers: the skew figure makes that visible in /v1/status and /metrics.
#[test]
fn skew_shows_a_region_taking_several_times_its_intended_share() {
    let s = Server::start(&["--config", &config()]);
    let admin = s.admin.unwrap();
    let skew = || {
        let st = json(&http(admin, "GET", "/v1/status", None, None).1);
        st["services"].as_array().unwrap().iter().find(|x| x["name"] == "weighted.svc.test.").unwrap().clone()
    };
    // Sample the counters (the first look has nothing to compare with), then answer.
    skew();
    for _ in 0..1000 {
        udp(s.dns, &query("weighted.svc.test.", RecordType::A));
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = skew();
    let k = before["skew"].as_f64().unwrap();
    assert!((0.9..1.3).contains(&k), "answers follow weights 50/30/20: skew {k}\n{before}");
    // us-east's weight 50 -> 10: intended 10/60; the last minute's answers still give it ~50 %.
    let (code, body) = http(admin, "PUT", "/v1/regions/us-east/weight", OPS, Some(r#"{"weight": 10}"#));
    assert_eq!(code, 200, "{body}");
    let after = skew();
    let k = after["skew"].as_f64().unwrap();
    assert!((2.5..3.5).contains(&k), "skew {k}\n{after}");
    let us = after["shares"].as_array().unwrap().iter().find(|x| x["region"] == "us-east").unwrap();
    assert!((us["intended"].as_f64().unwrap() - 10.0 / 60.0).abs() < 0.01, "{us}");
    let metrics = http(admin, "GET", "/metrics", None, None).1;
    let line = metrics.lines().find(|l| l.starts_with("gslbd_service_skew{service=\"weighted.svc.test.\"}")).unwrap();
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((2.5..3.5).contains(&v), "{line}");
}
