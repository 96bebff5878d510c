//! Response rate limiting (`[dns.rrl]`, issue 14), on the real binary, in the manner of
//! BIND's and Knot's RRL system tests: a flood from one /24 at a known rate for a known time,
//! counted by the client (answered, truncated, dropped) and compared with the rate × duration
//! and with the server's own metrics, while other clients are not limited.
//!
//! Every server here has one UDP worker, so one table sees every packet and the counts are
//! deterministic. Client sockets are non-blocking and every wait is bounded.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;

const NAME: &str = "host.pub.test.";

fn config(dir: &TempDir, rrl: &str) -> String {
    let text =
        format!("[dns]\nudp_workers = 1\n\n[dns.rrl]\n{rrl}\n[zones]\ndirectory = \"{}\"\n", test_zones().display());
    dir.write("gslbd.toml", &text).to_str().unwrap().to_string()
}

/// What a UDP client saw.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    /// Full answers (TC=0, with the answer records).
    answered: u64,
    /// Empty answers with TC=1 (slipped).
    truncated: u64,
}

impl Counts {
    fn dropped(&self) -> u64 {
        self.sent - self.answered - self.truncated
    }
}

/// Sends `qps` queries a second for `secs` seconds from `source` (paced in 10 ms ticks),
/// reading responses as they come, then waits up to 500 ms for late ones.
fn flood(server: SocketAddr, source: &str, qps: u64, secs: f64) -> Counts {
    flood_with(server, source, qps, secs, false)
}

/// As [`flood`]; with `ecs`, each query carries an EDNS Client Subnet option naming another
/// /24 (198.18.0.0/24, 198.18.1.0/24, ...), as a spoofer might add to dodge the limit.
fn flood_with(server: SocketAddr, source: &str, qps: u64, secs: f64, ecs: bool) -> Counts {
    let sock = UdpSocket::bind(source).unwrap();
    sock.set_nonblocking(true).unwrap();
    let packet = query(NAME, RecordType::A).to_bytes().unwrap();
    let mut c = Counts::default();
    let mut buf = [0u8; 1500];
    let mut read = |c: &mut Counts| {
        while let Ok(n) = sock.recv(&mut buf) {
            assert!(n >= 12, "short response");
            if buf[2] & 0x02 != 0 {
                assert_eq!(&buf[6..12], [0; 6], "a slipped response is empty");
                c.truncated += 1;
            } else {
                assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 2, "two A records");
                c.answered += 1;
            }
        }
    };
    let start = Instant::now();
    let total = (qps as f64 * secs) as u64;
    let ticks = (secs * 100.0) as u64;
    for tick in 0..ticks {
        let due = start + Duration::from_millis(tick * 10);
        while Instant::now() < due {
            read(&mut c);
            std::thread::sleep(Duration::from_millis(1));
        }
        // Spread the remainder so exactly `total` are sent.
        let upto = total * (tick + 1) / ticks;
        while c.sent < upto {
            let mut p = if ecs {
                let subnet = format!("198.18.{}.0/24", c.sent % 256);
                with_edns(query(NAME, RecordType::A), 1232, Some(&subnet)).to_bytes().unwrap()
            } else {
                packet.clone()
            };
            p[..2].copy_from_slice(&(c.sent as u16).to_be_bytes());
            sock.send_to(&p, server).unwrap();
            c.sent += 1;
        }
        read(&mut c);
    }
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end && c.answered + c.truncated < c.sent {
        read(&mut c);
        std::thread::sleep(Duration::from_millis(5));
    }
    c
}

/// A series from /metrics (0 when absent).
fn metric(s: &Server, series: &str) -> u64 {
    let text = http(s.admin.unwrap(), "GET", "/metrics", None, None).1;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn near(what: &str, got: u64, want: u64, slack: u64) {
    assert!(got.abs_diff(want) <= slack, "{what}: {got}, expected {want} ± {slack}");
}

#[test]
fn a_flood_from_one_prefix_gets_the_rate_and_the_rest_half_slipped_half_dropped() {
    let dir = TempDir::new("rrl");
    let path = config(&dir, "responses_per_second = 20\nslip = 2\nwindow = \"1s\"\nexempt = [\"127.0.2.0/24\"]\n");
    let s = Server::start(&["--config", &path]);
    let dns = s.dns;
    s.wait_log("rrl: rate limiting UDP responses per client prefix responses_per_second=20");
    // The start says what receive buffer the kernel granted (4 MiB asked; reported doubled).
    s.wait_log("udp receive buffer");
    let log = s.log();
    let line = log.lines().find(|l| l.contains("udp receive buffer")).expect("a receive buffer line");
    let got: u64 = line.split("got=").nth(1).and_then(|v| v.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(line.contains("asked=4194304") && got > 0, "{line}");
    if got < 2 * 4194304 {
        assert!(line.contains("net.core.rmem_max"), "a short buffer names the sysctl: {line}");
    }

    // Another /24 at 10 queries a second, at the same time as the flood.
    let other = std::thread::spawn(move || flood(dns, "127.0.1.1:0", 10, 3.0));
    let c = flood(dns, "127.0.0.1:0", 1000, 3.0);
    let o = other.join().unwrap();

    eprintln!("flood from 127.0.0.1: {c:?}, dropped {}; 127.0.1.1: {o:?}", c.dropped());
    assert_eq!(c.sent, 3000);
    // One second's allowance at the first query, then the rate at each whole second of the
    // prefix's own clock: 20 + 20 + 20 within the 3 s.
    near("answered", c.answered, 60, 15);
    let limited = c.sent - c.answered;
    let truncated_pct = c.truncated * 100 / limited;
    assert!((40..=60).contains(&truncated_pct), "truncated {truncated_pct}% of the limited: {c:?}");
    assert_eq!((o.sent, o.answered, o.truncated), (30, 30, 0), "the other /24 is not limited");

    // The server counted what the client saw.
    near("dropped (metric)", metric(&s, "gslbd_rrl_limited_responses_total{action=\"dropped\"}"), c.dropped(), 1);
    near("slipped (metric)", metric(&s, "gslbd_rrl_limited_responses_total{action=\"slipped\"}"), c.truncated, 1);
    assert_eq!(metric(&s, "gslbd_rrl_limited_responses_total{action=\"would_drop\"}"), 0);
    assert_eq!(metric(&s, "gslbd_rrl_table_capacity"), 65536);
    assert_eq!(metric(&s, "gslbd_rrl_table_entries"), 2, "one account per /24");

    // One line when the prefix starts being limited, one when it stops (a window after its
    // last limited response, swept once a second), none per packet.
    s.wait_log("no longer limiting client prefix prefix=127.0.0.0/24 account=\"responses\"");
    let log = s.log();
    assert_eq!(log.matches("rrl: limiting client prefix prefix=127.0.0.0/24").count(), 1, "{log}");
    assert_eq!(log.matches("client prefix prefix=").count(), 2, "{log}");
    assert_eq!(metric(&s, "gslbd_rrl_limited_prefixes"), 0);

    // The same flood over TCP: never limited (100 queries pipelined every 100 ms).
    let mut tcp_answered = 0;
    let start = Instant::now();
    for round in 0..30u32 {
        while start.elapsed() < Duration::from_millis(u64::from(round) * 100) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let msgs: Vec<_> = (0..100).map(|_| query(NAME, RecordType::A)).collect();
        for r in tcp(dns, &msgs) {
            assert!(!r.metadata.truncation, "TCP answers are never truncated");
            assert_eq!(r.answers.len(), 2);
            tcp_answered += 1;
        }
    }
    assert_eq!(tcp_answered, 3000);

    // An exempt prefix: the same rate, every query answered.
    let e = flood(dns, "127.0.2.1:0", 1000, 1.0);
    assert_eq!((e.sent, e.answered, e.truncated), (1000, 1000, 0));
    // Still nothing limited but the first flood.
    near("dropped (metric)", metric(&s, "gslbd_rrl_limited_responses_total{action=\"dropped\"}"), c.dropped(), 1);
}

#[test]
fn log_only_limits_nothing_and_says_what_it_would_have_done() {
    let dir = TempDir::new("rrl");
    let path = config(&dir, "responses_per_second = 20\nslip = 2\nwindow = \"1s\"\nlog_only = true\n");
    let s = Server::start(&["--config", &path]);
    let c = flood(s.dns, "127.0.0.1:0", 1000, 1.0);
    assert_eq!((c.sent, c.answered, c.truncated), (1000, 1000, 0), "nothing limited");
    let would_drop = metric(&s, "gslbd_rrl_limited_responses_total{action=\"would_drop\"}");
    let would_slip = metric(&s, "gslbd_rrl_limited_responses_total{action=\"would_slip\"}");
    near("would be limited", would_drop + would_slip, 1000 - 20, 20);
    near("would slip half", would_slip, would_drop, 1);
    assert_eq!(metric(&s, "gslbd_rrl_limited_responses_total{action=\"dropped\"}"), 0);
    assert_eq!(metric(&s, "gslbd_rrl_limited_responses_total{action=\"slipped\"}"), 0);
    s.wait_log("rrl (log_only): would limit client prefix prefix=127.0.0.0/24");
    s.wait_log("rrl (log_only): would no longer limit client prefix prefix=127.0.0.0/24");
}

#[test]
fn bad_rrl_settings_are_config_errors_with_their_place_and_a_hint() {
    let dir = TempDir::new("rrl");
    let path = config(
        &dir,
        "responses_per_second = 0\nslip = 11\nipv4_prefix_length = 33\nipv6_prefix_length = 0\ntable_size = 10\n",
    );
    let out = std::process::Command::new(bin()).args(["check", "--config", &path]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = [
        "gslbd.toml:5:24: error: dns.rrl.responses_per_second: 0 would answer nothing\n  hint: to turn rate limiting off remove [dns.rrl]",
        "gslbd.toml:6:8: error: dns.rrl.slip: 11 is out of range\n  hint: use 0",
        "gslbd.toml:7:22: error: dns.rrl.ipv4_prefix_length: 33 is out of range\n  hint: use 1 to 32",
        "gslbd.toml:8:22: error: dns.rrl.ipv6_prefix_length: 0 is out of range\n  hint: use 1 to 64",
        "gslbd.toml:9:14: error: dns.rrl.table_size: 10 is too small\n  hint: use 1024 to",
    ];
    for w in want {
        assert!(err.contains(w), "missing {w:?} in:\n{err}");
    }
    assert!(err.contains("5 error(s)"), "{err}");
    // The server refuses to start with them, exit 2.
    let (code, log) = Server::try_start(&["--config", &path]).err().expect("must not start");
    assert_eq!(code, Some(2), "{log}");
}

#[test]
fn a_reload_changes_the_limits_in_flight() {
    let dir = TempDir::new("rrl");
    let path = config(&dir, "responses_per_second = 20\nslip = 0\nwindow = \"1s\"\nlog_only = true\n");
    let s = Server::start(&["--config", &path]);
    let c = flood(s.dns, "127.0.0.1:0", 200, 0.5);
    assert_eq!((c.sent, c.answered), (100, 100), "log_only: nothing limited");
    config(&dir, "responses_per_second = 20\nslip = 0\nwindow = \"1s\"\n");
    s.signal("HUP");
    s.wait_log("dns.rrl changed; the new limits apply now");
    s.wait_log("reloaded");
    // Another /24, so it starts with a fresh allowance: 20 answered, the rest dropped.
    let c = flood(s.dns, "127.0.3.1:0", 200, 0.5);
    assert_eq!((c.sent, c.answered, c.truncated), (100, 20, 0), "{c:?}");
    assert_eq!(metric(&s, "gslbd_rrl_limited_responses_total{action=\"dropped\"}"), 80);
    // ECS names other networks, but the packets' source is what is limited.
    let c = flood_with(s.dns, "127.0.4.1:0", 200, 0.5, true);
    assert_eq!((c.sent, c.answered, c.truncated), (100, 20, 0), "{c:?}");
}

#[test]
fn a_slipped_response_is_empty_truncated_and_keeps_edns() {
    let dir = TempDir::new("rrl");
    let path = config(&dir, "responses_per_second = 1\nerrors_per_second = 1\nslip = 1\nwindow = \"1s\"\n");
    let s = Server::start(&["--config", &path]);
    let sock = UdpSocket::bind("127.0.5.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let ask = |name: &str| {
        let q = with_edns(query(name, RecordType::A), 1232, None);
        sock.send_to(&q.to_bytes().unwrap(), s.dns).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).unwrap();
        let r = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(r.metadata.id, q.metadata.id);
        r
    };
    // (name, rcode; the first of each account is answered, the second slipped)
    for (name, rcode) in [(NAME, ResponseCode::NoError), ("nope.pub.test.", ResponseCode::NXDomain)] {
        let r = ask(name);
        assert!(!r.metadata.truncation && r.answers.len() + r.authorities.len() > 0, "{name}: {r:?}");
        let r = ask(name);
        assert!(r.metadata.truncation, "{name}: {r:?}");
        assert_eq!(r.metadata.response_code, rcode, "{name}");
        assert_eq!((r.answers.len(), r.authorities.len()), (0, 0), "{name}: empty");
        assert_eq!(r.queries.len(), 1, "{name}: the question");
        assert!(r.edns.is_some(), "{name}: OPT kept");
    }
}
