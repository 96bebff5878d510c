//! The status page (`GET /`) in a real browser: headless Chromium (Debian `chromium`) loads
//! it from a running gslbd after a region is forced down; the DOM shows every region and
//! service with the right state, and screenshots at desktop and phone width are kept in
//! target/test-artifacts/ (not committed).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hickory_proto::rr::RecordType;

const OPS: Option<&str> = Some("test-token-ops");

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=...`); its
/// stdout. None when Chromium is missing (after `missing_tool`).
fn chromium(url: &str, args: &[&str]) -> Option<String> {
    let profile = TempDir::new("chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output();
    match out {
        Ok(o) => {
            assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Err(_) => {
            missing_tool("chromium (Debian package chromium)");
            None
        }
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_status_page_shows_every_region_and_service_in_a_real_browser() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml");
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    for _ in 0..20 {
        udp(s.dns, &query("weighted.svc.test.", RecordType::A));
    }
    let (code, body) = http(admin, "POST", "/v1/regions/us-east/force", OPS, Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    let url = format!("http://{admin}/");
    let Some(dom) = chromium(&url, &["--dump-dom"]) else { return };
    let status = json(&http(admin, "GET", "/v1/status", None, None).1);
    // Every region, with its state as /v1/status says it.
    for r in status["regions"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let row = format!("<tr id=\"region-{name}\" data-up=\"{}\"", r["up"].as_bool().unwrap());
        assert!(dom.contains(&row), "no {row} in the page");
    }
    assert!(dom.contains("<tr id=\"region-us-east\" data-up=\"false\""), "us-east is forced down");
    assert!(dom.contains("forced down, by ops"), "the override and who set it");
    // Every service, with its mode, its name shown in full.
    for svc in status["services"].as_array().unwrap() {
        let name = svc["name"].as_str().unwrap();
        let row = format!(
            "<tr id=\"service-{name}\" data-mode=\"{}\"><td>{}</td>",
            svc["mode"].as_str().unwrap(),
            name.trim_end_matches('.')
        );
        assert!(dom.contains(&row), "no {row} in the page");
    }
    assert!(dom.contains("data-mode=\"degraded\"><td>failover.svc.test</td>"));
    // The answers clients got: weighted's share per region.
    assert!(dom.contains("<div class=\"share\" data-region=\"us-east\">"), "recent shares");
    // The map: a circle per region with coordinates, us-east red.
    assert!(dom.contains("<g class=\"region\" data-region=\"eu-west\"><circle"));
    assert!(dom.contains(
        "<g class=\"region\" data-region=\"us-east\"><circle cx=\"103.00\" cy=\"51.10\" r=\"3\" fill=\"#cf222e\""
    ));
    // The change that was made, in the recent changes.
    assert!(dom.contains("<b>override</b> us-east: force-down by ops"), "recent changes");
    assert!(dom.contains("<b>mode</b> failover.svc.test: normal -&gt; degraded"));
    // Screenshots, desktop and phone width.
    for (file, size) in [("status-page.png", "1280,1400"), ("status-page-phone.png", "390,1600")] {
        let path = artifacts().join(file);
        let _ = std::fs::remove_file(&path);
        chromium(&url, &[&format!("--screenshot={}", path.display()), &format!("--window-size={size}")]).unwrap();
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{}: {} bytes", path.display(), png.len());
    }
}

#[test]
fn the_page_needs_a_token_when_reads_do() {
    let dir = TempDir::new("page-token");
    let gslb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb");
    dir.write("admin.token", "ops:page-secret\n");
    dir.write(
        "gslbd.toml",
        &format!(
            "[zones]\ndirectory = \"{}\"\n[admin]\ntoken_file = \"admin.token\"\nread_requires_token = true\n",
            gslb.join("zones").display()
        ),
    );
    let s = Server::start(&["--config", dir.path().join("gslbd.toml").to_str().unwrap()]);
    let admin = s.admin.unwrap();
    assert_eq!(http(admin, "GET", "/", None, None).0, 401);
    let (code, page) = http(admin, "GET", "/", Some("page-secret"), None);
    assert_eq!(code, 200);
    assert!(page.starts_with("<!doctype html>"), "{page}");
}
