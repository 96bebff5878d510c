//! `--log-format json` and `GSLBD_LOG_FORMAT=json`: every log line on stderr is one JSON
//! object with the level, the message and the event's fields, as the text lines carry them.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

fn objects(log: &str) -> Vec<serde_json::Value> {
    log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}"))).collect()
}

#[test]
fn json_logs_are_one_object_per_event_with_the_text_fields() {
    let s = Server::start(&["--zones", test_zones().to_str().unwrap(), "--log-format", "json"]);
    s.signal("HUP");
    s.wait_log("\"reloaded\"");
    let lines = objects(&s.log());
    let serving = lines.iter().find(|v| v["message"] == "serving").expect("a serving line");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["target"], "gslbd::server");
    assert_eq!(serving["zones"], 2, "{serving}");
    assert!(serving["listen"].as_str().unwrap().contains("/udp"), "{serving}");
    let reloaded = lines.iter().find(|v| v["message"] == "reloaded").expect("a reloaded line");
    assert_eq!(reloaded["zones"], 2, "{reloaded}");
    assert!(reloaded["elapsed_ms"].is_u64(), "{reloaded}");
    assert!(reloaded["timestamp"].as_str().unwrap().ends_with('Z'), "{reloaded}");
}

#[test]
fn the_environment_selects_json_and_a_bad_format_is_refused() {
    let mut child = Command::new(bin())
        .args(["--zones", test_zones().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("GSLBD_LOG_FORMAT", "json")
        .env("GSLBD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + WAIT;
    while first.trim().is_empty() && Instant::now() < deadline {
        reader.read_line(&mut first).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(first.trim()).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(v["level"].is_string() && v["message"].is_string(), "{v}");
    let out = Command::new(bin())
        .args(["--zones", test_zones().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("GSLBD_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GSLBD_LOG_FORMAT: \"yaml\" is not a log format"));
}
