//! `gslbd ctl` end to end: the real binary as client of a running gslbd (tests/gslb's
//! configuration): every subcommand, tables and --json, an API error, a wrong token, no
//! server, and the admin address and token found in the config file.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn gslb_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml")
}

/// Runs `gslbd ctl ARGS` against the server's admin address; token from the config file.
fn ctl(s: &Server, args: &[&str]) -> Output {
    let url = format!("http://{}", s.admin.unwrap());
    let mut cmd = Command::new(bin());
    cmd.args(["ctl", "--admin", &url, "--config", gslb_config().to_str().unwrap()]).args(args);
    cmd.env_remove("GSLBD_ADMIN_TOKEN").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The output of a command that must succeed.
fn ok(o: Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(&o), stderr(&o));
    stdout(&o)
}

fn region_line<'a>(status: &'a str, name: &str) -> &'a str {
    status.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("no {name}:\n{status}"))
}

#[test]
fn every_subcommand_against_a_running_server() {
    let s = Server::start(&["--config", gslb_config().to_str().unwrap()]);
    // status: tables of regions and services.
    let status = ok(ctl(&s, &["status"]));
    assert!(status.contains("REGIONS\nNAME"), "{status}");
    assert!(region_line(&status, "eu-west").contains("yes"), "{status}");
    let weighted = status.lines().find(|l| l.starts_with("weighted.svc.test.")).unwrap();
    assert!(weighted.contains("weighted") && weighted.contains("normal"), "{weighted}");
    // status --json is /v1/status.
    let from_ctl: serde_json::Value = serde_json::from_str(&ok(ctl(&s, &["status", "--json"]))).unwrap();
    let from_api = json(&http(s.admin.unwrap(), "GET", "/v1/status", None, None).1);
    assert_eq!(from_ctl["services"], from_api["services"]);
    assert_eq!(from_ctl["regions"], from_api["regions"]);
    // explain, with and without --json.
    let out = ok(ctl(&s, &["explain", "geo.svc.test", "A", "--ecs", "81.2.69.0/24"]));
    assert!(out.contains("chosen eu-west"), "{out}");
    assert!(out.contains("ECS scope 24") && out.contains("192.0.2.12"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(ctl(&s, &["explain", "geo.svc.test", "--json"]))).unwrap();
    assert_eq!(v["query"]["type"], "A");
    // From 127.0.0.1 (no ECS): North America, us-east.
    assert!(v["answer"]["records"].to_string().contains("192.0.2.11"), "{v}");
    // drain / undrain / weight / force, each seen in the next status.
    assert_eq!(ok(ctl(&s, &["drain", "eu-west"])), "ok: eu-west: drained\n");
    assert!(region_line(&ok(ctl(&s, &["status"])), "eu-west").contains("0/30"));
    assert_eq!(ok(ctl(&s, &["undrain", "eu-west"])), "ok: eu-west: -\n");
    assert_eq!(ok(ctl(&s, &["weight", "eu-west", "10"])), "ok: eu-west: weight=10\n");
    assert!(region_line(&ok(ctl(&s, &["status"])), "eu-west").contains("10/30"));
    let out = ok(ctl(&s, &["force", "us-east", "down", "--for", "10m"]));
    assert!(out.starts_with("ok: us-east: forced down until "), "{out}");
    let line = region_line(&ok(ctl(&s, &["status"])), "us-east").to_string();
    assert!(line.contains("NO") && line.contains("forced down until"), "{line}");
    assert_eq!(ok(ctl(&s, &["force", "us-east", "auto"])), "ok: us-east: -\n");
    assert!(region_line(&ok(ctl(&s, &["status"])), "us-east").contains("yes"));
    // reload.
    assert_eq!(ok(ctl(&s, &["reload"])), "reloaded: the new configuration and zones are serving\n");
    // The audit log names the token's id from the config's token file.
    let audit = std::fs::read_to_string(s.state_dir.path().join("audit.log")).unwrap();
    assert!(audit.contains("ops"), "{audit}");
}

#[test]
fn failures_exit_non_zero_with_the_apis_message() {
    let s = Server::start(&["--config", gslb_config().to_str().unwrap()]);
    // An API error: 404 for a region that does not exist.
    let o = ctl(&s, &["weight", "nosuch", "5"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "gslbd ctl: 404: unknown region \"nosuch\" (field \"name\")\n");
    // ... and with --json, the API's own error body on stdout.
    let o = ctl(&s, &["drain", "nosuch", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(body["field"], "name");
    // A bad value the API refuses (weight above the maximum).
    let o = ctl(&s, &["weight", "eu-west", "2000000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("gslbd ctl: 400: weight must be an integer"), "{}", stderr(&o));
    // A force for no time at all: a usage error (exit 2, before any request), not a force
    // that ends as it starts; nothing changed.
    for zero in ["0s", "0", "500ms"] {
        let o = ctl(&s, &["force", "us-east", "down", "--for", zero]);
        assert_eq!(o.status.code(), Some(2), "--for {zero}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("is under one second; give at least 1s"), "{}", stderr(&o));
    }
    assert!(region_line(&ok(ctl(&s, &["status"])), "us-east").contains("yes"));
    // A wrong token: 401, and nothing changed.
    let dir = TempDir::new("ctl");
    let wrong = dir.write("wrong.token", "ops:not-the-secret\n");
    let o = ctl(&s, &["--token-file", wrong.to_str().unwrap(), "drain", "eu-west"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("gslbd ctl: 401: "), "{}", stderr(&o));
    assert!(region_line(&ok(ctl(&s, &["status"])), "eu-west").contains("30/30"));
    // No server at the address.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let o = Command::new(bin())
        .args(["ctl", "--admin", &format!("http://{closed}"), "--config", "/nonexistent.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("gslbd ctl: cannot reach the admin API at http://{closed}")),
        "{}",
        stderr(&o)
    );
    // No config and no --admin: says where it looked.
    let o = Command::new(bin()).args(["ctl", "--config", "/nonexistent.toml", "status"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent.toml: cannot read"), "{}", stderr(&o));
}

#[test]
fn the_admin_address_and_token_come_from_the_config_file() {
    // A config whose [admin] listen is a free port, and the server told the same.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = TempDir::new("ctl-config");
    let base = std::fs::read_to_string(gslb_config()).unwrap().replace(
        "token_file = \"admin.token\"",
        &format!("token_file = \"admin.token\"\nlisten = \"127.0.0.1:{port}\""),
    );
    let gslb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb");
    let base = base
        .replace("directory = \"zones\"", &format!("directory = \"{}\"", gslb.join("zones").display()))
        .replace("../../geoip/", &format!("{}/", Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip").display()));
    dir.write("admin.token", "ci:from-the-config\n");
    let cfg = dir.write("gslbd.toml", &base);
    let admin = format!("127.0.0.1:{port}");
    let s = Server::start(&["--config", cfg.to_str().unwrap(), "--admin-listen", &admin]);
    assert_eq!(s.admin.unwrap().port(), port);
    let o = Command::new(bin())
        .args(["ctl", "--config", cfg.to_str().unwrap(), "drain", "ap-south"])
        .env_remove("GSLBD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(ok(o), "ok: ap-south: drained\n");
    // The token from the environment wins over the config's.
    let o = Command::new(bin())
        .args(["ctl", "--config", cfg.to_str().unwrap(), "undrain", "ap-south"])
        .env("GSLBD_ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("gslbd ctl: 401: "), "{}", stderr(&o));
}
