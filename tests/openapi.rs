//! docs/openapi.yaml describes the admin API: every route the router has is in it, it is
//! served as /v1/openapi.json, and responses recorded from the real server (successes and
//! errors of every endpoint) validate against it (tests/openapi_check.py:
//! openapi-spec-validator and jsonschema).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

const OPS: Option<&str> = Some("test-token-ops");

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The paths the admin router serves, read from its source (`.route("PATH", ...)`).
fn routed_paths() -> BTreeSet<String> {
    let src = std::fs::read_to_string(repo("src/admin.rs")).unwrap();
    src.split(".route(\"").skip(1).map(|rest| rest.split('"').next().unwrap().to_string()).collect()
}

#[test]
fn every_route_is_described_and_responses_match_the_spec() {
    // A config in a directory of its own, so a reload can be made to fail.
    let dir = TempDir::new("openapi");
    let gslb = repo("tests/gslb");
    let text = std::fs::read_to_string(gslb.join("gslbd.toml"))
        .unwrap()
        .replace("directory = \"zones\"", &format!("directory = \"{}\"", gslb.join("zones").display()))
        .replace("token_file = \"admin.token\"", &format!("token_file = \"{}\"", gslb.join("admin.token").display()))
        .replace("../../geoip/", &format!("{}/", repo("geoip").display()));
    // us-east reads its load (0.95: full) from a JSON page, and a service sheds by load, so
    // the load fields, explain's load notes and a refused drain are all recorded.
    let load = serve_json("{\"u\": 0.95}");
    let text = format!(
        "{text}\n[regions.us-east.load]\ntype = \"json\"\nurl = \"http://{load}/load\"\npointer = \"/u\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n\
         [services.\"shed.svc.test\"]\nregions = [\"us-east\", \"eu-west\"]\npolicy = [\"shed\", \"weighted\"]\n"
    );
    let cfg = dir.write("gslbd.toml", &text);
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !json(&http(admin, "GET", "/v1/status", None, None).1)["regions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "us-east" && r["utilisation"].is_number())
    {
        assert!(std::time::Instant::now() < deadline, "us-east's load never read");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The document served is the YAML's content.
    let (code, served) = http(admin, "GET", "/v1/openapi.json", None, None);
    assert_eq!(code, 200);
    let served = json(&served);
    assert_eq!(served["openapi"], "3.1.0");
    let described: BTreeSet<String> = served["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = routed_paths();
    assert!(routed.len() >= 10, "{routed:?}");
    assert_eq!(routed, described, "routes of src/admin.rs vs paths of docs/openapi.yaml");

    // (method, path template, request path, token, body, content type)
    type Call = (&'static str, &'static str, &'static str, Option<&'static str>, Option<&'static str>, &'static str);
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain";
    #[rustfmt::skip]
    let calls: &[Call] = &[
        ("GET", "/v1/status", "/v1/status", None, None, JSON),
        ("GET", "/", "/", None, None, "text/html"),
        ("GET", "/v1/explain", "/v1/explain?name=geo.svc.test&type=A&ecs=81.2.69.0/24", None, None, JSON),
        ("GET", "/v1/explain", "/v1/explain?name=static.svc.test", None, None, JSON),
        ("GET", "/v1/explain", "/v1/explain?name=mixfam.gslb.test&type=AAAA", None, None, JSON),
        ("GET", "/v1/explain", "/v1/explain?type=A", None, None, JSON),
        ("PUT", "/v1/regions/{name}/weight", "/v1/regions/eu-west/weight", OPS, Some(r#"{"weight": 10}"#), JSON),
        ("PUT", "/v1/regions/{name}/weight", "/v1/regions/eu-west/weight", OPS, Some(r#"{"weight": -1}"#), JSON),
        ("PUT", "/v1/regions/{name}/weight", "/v1/regions/eu-west/weight", OPS, Some(r#"{"weight": 1, "x": 2}"#), JSON),
        ("PUT", "/v1/regions/{name}/weight", "/v1/regions/nosuch/weight", OPS, Some(r#"{"weight": 1}"#), JSON),
        ("PUT", "/v1/regions/{name}/weight", "/v1/regions/eu-west/weight", None, Some(r#"{"weight": 1}"#), JSON),
        ("GET", "/v1/explain", "/v1/explain?name=shed.svc.test", None, None, JSON),
        ("POST", "/v1/regions/{name}/drain", "/v1/regions/eu-west/drain?dry_run=true", OPS, None, JSON),
        ("POST", "/v1/regions/{name}/drain", "/v1/regions/eu-west/drain", OPS, None, JSON),
        ("POST", "/v1/regions/{name}/drain", "/v1/regions/eu-west/drain", OPS, Some(r#"{"force": 1}"#), JSON),
        ("POST", "/v1/regions/{name}/drain", "/v1/regions/eu-west/drain", OPS, Some(r#"{"force": true}"#), JSON),
        ("POST", "/v1/regions/{name}/undrain", "/v1/regions/eu-west/undrain", OPS, None, JSON),
        ("POST", "/v1/regions/{name}/drain", "/v1/regions/nosuch/drain", OPS, None, JSON),
        ("POST", "/v1/regions/{name}/force", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "down", "ttl_seconds": 60}"#), JSON),
        ("POST", "/v1/regions/{name}/force", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "auto"}"#), JSON),
        ("POST", "/v1/regions/{name}/force", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "sideways"}"#), JSON),
        ("POST", "/v1/reload", "/v1/reload", OPS, None, JSON),
        ("POST", "/v1/reload", "/v1/reload", None, None, JSON),
        ("GET", "/v1/openapi.json", "/v1/openapi.json", None, None, JSON),
        ("GET", "/metrics", "/metrics", None, None, TEXT),
        ("GET", "/healthz", "/healthz", None, None, TEXT),
        ("GET", "/readyz", "/readyz", None, None, TEXT),
    ];
    let mut samples = Vec::new();
    let mut seen = BTreeSet::new();
    for (method, template, path, token, body, content_type) in calls {
        let (status, media, text) = http_typed(admin, method, path, *token, *body);
        // What the spec says the response is, the server must send (generated clients
        // dispatch on it).
        assert_eq!(media, *content_type, "{method} {path} ({status})");
        seen.insert((*template, status));
        samples.push(serde_json::json!({
            "method": method, "path": template, "status": status, "content_type": content_type, "body": text,
        }));
    }
    // A body over 4 KiB.
    let big = format!(r#"{{"weight": 1, "pad": "{}"}}"#, "x".repeat(5000));
    let (status, media, text) = http_typed(admin, "PUT", "/v1/regions/eu-west/weight", OPS, Some(&big));
    assert_eq!((status, media.as_str()), (413, JSON));
    samples.push(serde_json::json!({"method": "PUT", "path": "/v1/regions/{name}/weight", "status": 413, "content_type": JSON, "body": text}));
    // A reload refused: every error, one object each.
    dir.write("gslbd.toml", &(text_with_error(&std::fs::read_to_string(&cfg).unwrap())));
    let (status, text) = http(admin, "POST", "/v1/reload", OPS, None);
    assert_eq!(status, 422, "{text}");
    samples.push(
        serde_json::json!({"method": "POST", "path": "/v1/reload", "status": 422, "content_type": JSON, "body": text}),
    );
    // Every status the calls were meant to see.
    for want in [
        ("/v1/explain", 400),
        ("/v1/regions/{name}/weight", 400),
        ("/v1/regions/{name}/weight", 404),
        ("/v1/regions/{name}/weight", 401),
        ("/v1/reload", 200),
        ("/v1/regions/{name}/drain", 409),
        ("/v1/regions/{name}/drain", 400),
        ("/v1/regions/{name}/drain", 200),
        ("/v1/reload", 401),
    ] {
        assert!(seen.contains(&want), "no {want:?} among {seen:?}");
    }
    let samples_file = dir.write("samples.json", &serde_json::to_string(&samples).unwrap());
    let out = Command::new("python3")
        .arg(repo("tests/openapi_check.py"))
        .arg(repo("docs/openapi.yaml"))
        .arg(&samples_file)
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if said.contains("ModuleNotFoundError") {
        return missing_tool("python3 modules openapi-spec-validator and jsonschema (pip)");
    }
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("openapi: {} passed, 0 failed", samples.len())), "{said}");
}

/// The config with one error: a region naming an address that is not one.
fn text_with_error(text: &str) -> String {
    format!("{text}\n[regions.broken]\naddresses = [\"not-an-address\"]\n")
}
