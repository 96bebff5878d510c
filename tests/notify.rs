//! `[[notify]]` webhooks end to end: a receiver this test runs gets one signed notification
//! per health, mode and override change, in order; a receiver that hangs delays neither DNS
//! answers nor probes (nor the other receiver).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const SECRET: &str = "s3cret-for-webhooks";

/// One request a receiver got: its headers (lower-case names) and body.
#[derive(Debug, Clone, Default)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback: records every POST and answers 200, or with `hang`,
/// accepts and never answers.
fn receiver(hang: bool) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            if hang {
                // Held open, never answered; counted as one "received" with no body.
                held.push(stream);
                got2.lock().unwrap().push(Received::default());
                continue;
            }
            let got = got2.clone();
            std::thread::spawn(move || handle(stream, &got));
        }
    });
    (addr, got)
}

fn handle(stream: TcpStream, got: &Mutex<Vec<Received>>) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        let (k, v) = line.trim_end().split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    got.lock().unwrap().push(Received { headers, body });
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// HMAC-SHA256 of `body` with the shared secret, as `sha256=HEX` (computed here with ring,
/// not with gslbd's own function).
fn expected_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    "sha256=".to_string() + &tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
}

#[test]
fn each_change_is_one_signed_notification_in_order_and_a_hung_receiver_delays_nothing() {
    let (good, got) = receiver(false);
    let (hung, hung_got) = receiver(true);
    // The checked region's health endpoint: a TCP port this test closes later.
    let health = TcpListener::bind("127.0.0.1:0").unwrap();
    let health_addr = health.local_addr().unwrap();
    let dir = TempDir::new("notify");
    dir.write(
        "zones/svc.test.zone",
        "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    dir.write("admin.token", "ops:notify-test\n");
    dir.write("hook.secret", &format!("{SECRET}\n"));
    let config = dir.write(
        "gslbd.toml",
        &format!(
            "[zones]\ndirectory = \"zones\"\n[admin]\ntoken_file = \"admin.token\"\n\
             [[notify]]\nurl = \"http://{good}/hook?key=not-in-metrics\"\nsecret_file = \"hook.secret\"\n\
             [[notify]]\nurl = \"http://{hung}/hook\"\nsecret_file = \"hook.secret\"\ntimeout = \"30s\"\n\
             [regions.checked]\naddresses = [\"192.0.2.1\"]\n[regions.checked.check]\ntype = \"tcp\"\naddress = \"{health_addr}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 2\n\
             [regions.other]\naddresses = [\"192.0.2.2\"]\n\
             [services.\"app.svc.test\"]\nregions = [\"checked\", \"other\"]\npolicy = \"failover\"\n"
        ),
    );
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    let token = Some("notify-test");
    let wait_for = |what: &str, n: usize| {
        let deadline = Instant::now() + WAIT;
        while got.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {} notifications, not {n}: {:?}",
                got.lock().unwrap().len(),
                got
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // 1. checked: unknown -> healthy (rise 1).
    wait_for("health verdict", 1);
    // 2. An override, and 3. the mode change it causes (degraded).
    let (code, body) = http(admin, "POST", "/v1/regions/other/force", token, Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    wait_for("force and mode", 3);
    // 4. Health: the endpoint closes; checked goes unhealthy; 5. the service: all-down is
    // fail-open by default.
    drop(health);
    wait_for("health down and mode", 5);
    // The hung receiver held every notification for 30 s meanwhile (gslbd did dial it):
    // DNS answered at once, and the prober kept probing (the transition above came from it).
    assert!(!hung_got.lock().unwrap().is_empty(), "gslbd never connected to the hung receiver");
    for _ in 0..20 {
        let t = Instant::now();
        udp(s.dns, &query("app.svc.test.", RecordType::A));
        assert!(t.elapsed() < Duration::from_millis(100), "a DNS answer took {:?}", t.elapsed());
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = got.lock().unwrap().clone();
    let events: Vec<serde_json::Value> = got.iter().map(Received::json).collect();
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            let subject = e.get("region").or(e.get("service")).and_then(|v| v.as_str()).unwrap_or("");
            let what = e.get("action").or(e.get("to")).and_then(|v| v.as_str()).unwrap_or("");
            format!("{} {subject} {what}", e["kind"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            "health checked healthy",
            "override other force-down",
            "mode app.svc.test. degraded",
            "health checked unhealthy",
            "mode app.svc.test. fail-open",
        ],
        "one notification per change, in order"
    );
    for (r, e) in got.iter().zip(&events) {
        assert_eq!(r.header("x-gslbd-signature"), Some(expected_signature(&r.body).as_str()), "{e}");
        assert_eq!(r.header("x-gslbd-event"), e["kind"].as_str());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-gslbd-delivery"), Some(e["seq"].to_string().as_str()));
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(events[3]["reason"], "connection refused", "{}", events[3]);
    // Metrics: deliveries to the good target, its label without the query string.
    let metrics = http(admin, "GET", "/metrics", None, None).1;
    let line = format!("gslbd_notify_deliveries_total{{target=\"http://{good}/hook\",result=\"ok\"}} 5");
    assert!(metrics.contains(&line), "{line}\n{metrics}");
    assert!(!metrics.contains("not-in-metrics"));
}

#[test]
fn bad_notify_settings_are_file_line_errors() {
    let dir = TempDir::new("notify-bad");
    dir.write(
        "zones/svc.test.zone",
        "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    );
    let config = dir.write(
        "gslbd.toml",
        "[zones]\ndirectory = \"zones\"\n[[notify]]\nurl = \"ftp://x\"\nsecret_file = \"missing.secret\"\nevents = [\"health\", \"moods\"]\nretries = 99\n",
    );
    let out = std::process::Command::new(bin()).args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let path = config.display();
    for want in [
        format!("{path}:4:7: error: notify[0].url: \"ftp://x\" is not an http or https URL"),
        format!("{path}:5:15: error: notify[0].secret_file: cannot read "),
        format!("{path}:6:21: error: notify[0].events: \"moods\" is not an event kind"),
        format!("{path}:7:11: error: notify[0].retries: 99 is out of range"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
}
