//! The deploy/ files stay valid: the demo's and the systemd example's configurations pass
//! `gslbd check`, the Kubernetes manifests parse as YAML (with python3 and PyYAML, which
//! tests/run.sh installs) and hold what an operator relies on, and the configuration in their
//! ConfigMap passes `gslbd check` too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `gslbd check --config PATH`: its stdout, or a panic with its errors.
fn check(config: &Path) -> String {
    let out = Command::new(bin()).args(["check", "--config"]).arg(config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Replaces `from` (which must occur) with `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in:\n{text}");
    text.replace(from, to)
}

/// The production GeoIP path, swapped for the test fixture (the real file is not here).
fn with_fixture_geoip(cfg: &str) -> String {
    let fixture = root().join("geoip/test-city.mmdb");
    edit(cfg, "\"/var/lib/GeoIP/GeoLite2-City.mmdb\"", &format!("{:?}", fixture.to_str().unwrap()))
}

#[test]
fn demo_config_passes_check() {
    let out = check(&root().join("deploy/demo/gslbd.toml"));
    assert!(out.starts_with("ok: 1 zones"), "{out}");
    assert!(out.contains("4 services, 3 regions"), "{out}");
}

#[test]
fn systemd_example_config_passes_check() {
    let dir = TempDir::new("deploy-systemd");
    let cfg = std::fs::read_to_string(root().join("deploy/systemd/gslbd.toml")).unwrap();
    let cfg = edit(&with_fixture_geoip(&cfg), "\"/var/lib/gslbd\"", "\"state\"");
    let path = dir.write("gslbd.toml", &cfg);
    dir.write("admin.tokens", "ops:test\n");
    let zone = std::fs::read_to_string(root().join("deploy/systemd/zones/svc.example.com.zone")).unwrap();
    dir.write("zones/svc.example.com.zone", &zone);
    let out = check(&path);
    assert!(out.contains("2 services, 3 regions"), "{out}");
}

/// Every document of every YAML file in deploy/kubernetes, as JSON, by file name; None
/// (after saying why) when python3 or PyYAML is missing.
fn kubernetes_documents() -> Option<Vec<(String, Value)>> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let script = "import json, sys, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let mut docs = Vec::new();
    for f in files {
        let out = match Command::new("python3").args(["-c", script]).arg(&f).output() {
            Ok(o) => o,
            Err(_) => {
                missing_tool("python3 is not installed");
                return None;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'yaml'") {
            missing_tool("PyYAML is missing (apt-get install python3-yaml)");
            return None;
        }
        assert!(out.status.success(), "{}: not valid YAML:\n{stderr}", f.display());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for d in serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap() {
            docs.push((name.clone(), d));
        }
    }
    Some(docs)
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

#[test]
fn kubernetes_manifests_parse_and_keep_their_promises() {
    let Some(docs) = kubernetes_documents() else { return };
    for (file, d) in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{file}: a document without apiVersion/kind");
    }

    let dep = find(&docs, "Deployment", "gslbd");
    assert!(dep["spec"]["replicas"].as_u64().unwrap() >= 2, "one replica is a single point of failure");
    let pod = &dep["spec"]["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname", "replicas must not share a node");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = pod["containers"].as_array().unwrap().iter().find(|c| c["name"] == "gslbd").unwrap();
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["NET_BIND_SERVICE"]));
    assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["requests"]["memory"].is_string());
    // Every volume the container mounts exists, and the admin token comes from a Secret.
    let volumes = pod["volumes"].as_array().unwrap();
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(volumes.iter().any(|v| v["name"] == m["name"]), "volume {} is not defined", m["name"]);
    }
    assert!(volumes.iter().any(|v| v["secret"]["secretName"] == "gslbd-admin"), "admin token Secret");

    let dns = find(&docs, "Service", "gslbd-dns");
    let mut protocols: Vec<&str> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["port"] == 53)
        .map(|p| p["protocol"].as_str().unwrap())
        .collect();
    protocols.sort();
    assert_eq!(protocols, ["TCP", "UDP"], "DNS needs both");
    let admin = find(&docs, "Service", "gslbd-admin");
    assert_eq!(admin["spec"]["type"], "ClusterIP");
    assert_eq!(admin["spec"]["ports"][0]["port"], 8053);

    // The ConfigMap's config, laid out as the pod sees it, passes `gslbd check`.
    let cm = &find(&docs, "ConfigMap", "gslbd")["data"];
    let dir = TempDir::new("deploy-k8s");
    let token = dir.write("secret/admin.tokens", "ops:test\n");
    let cfg = cm["gslbd.toml"].as_str().unwrap();
    let cfg =
        edit(&with_fixture_geoip(cfg), "\"/etc/gslbd-secret/admin.tokens\"", &format!("{:?}", token.to_str().unwrap()));
    let cfg = edit(&cfg, "\"/var/lib/gslbd\"", "\"state\"");
    let path = dir.write("gslbd.toml", &cfg);
    dir.write("zones/svc.example.com.zone", cm["svc.example.com.zone"].as_str().unwrap());
    let out = check(&path);
    assert!(out.contains("2 services, 3 regions"), "{out}");
}
