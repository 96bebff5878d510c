//! Health checks end to end: the real binary probes health endpoints this test runs on
//! loopback, and DNS answers follow what the endpoints do (fail, hang, flap, vanish).
//!
//! The service `app.svc.test` fails over from region `primary` (192.0.2.1) to `backup`
//! (192.0.2.2). Checks use interval 200ms, timeout 150ms, rise 2, fall 3 unless a test says
//! otherwise, so a failed region leaves the answers within interval × fall + timeout (plus
//! one interval of slack).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(150);
const RISE: u32 = 2;
const FALL: u32 = 3;
const PRIMARY: &str = "192.0.2.1";
const BACKUP: &str = "192.0.2.2";

const ZONE: &str =
    "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

/// What a health endpoint does with the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// 200 OK
    Up = 0,
    /// 503
    Down = 1,
    /// Accept, read the request, never answer.
    Hang = 2,
    /// 200 and 503 alternately, per connection.
    Flap = 3,
    /// 200 OK after 60 ms: a region far away.
    Slow = 4,
    /// 503 on two connections of every three, 200 on the third.
    Intermittent = 5,
    /// 200 when the Host header's host part is the SNI the client sent, else 421
    /// Misdirected Request (as a virtual-hosting HTTPS server does).
    HostMustMatchSni = 6,
}

/// What an endpoint saw on one connection.
#[derive(Debug, Clone)]
struct Seen {
    /// The TLS server name the client sent (HTTPS endpoints only).
    sni: Option<String>,
    /// The request line.
    line: String,
    /// Header names (lowercase) and values, in order.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A connection an endpoint serves: plain TCP or TLS (which knows the SNI).
trait Conn: Read + Write + Send {
    fn sni(&self) -> Option<String> {
        None
    }
}

impl Conn for TcpStream {}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn sni(&self) -> Option<String> {
        self.conn.server_name().map(str::to_string)
    }
}

/// Reads a request head (up to the blank line, the read timeout, or 8 KiB).
fn read_head(s: &mut dyn Conn) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

fn parse_head(sni: Option<String>, head: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Seen { sni, line, headers }
}

/// An HTTP (or, with a TLS config, HTTPS) health endpoint on a loopback port, switchable
/// between modes, that records what it receives, counts the connections it accepts and can
/// be closed (its port then refuses connections).
struct Endpoint {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    fn start(mode: Mode) -> Endpoint {
        Endpoint::start_on("127.0.0.1:0", None, mode)
    }

    /// On `bind` (an address with port 0 for a free one), speaking TLS with `tls` if given.
    fn start_on(bind: &str, tls: Option<Arc<rustls::ServerConfig>>, mode: Mode) -> Endpoint {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let e = Endpoint {
            addr,
            mode: Arc::new(AtomicU8::new(mode as u8)),
            connections: Arc::default(),
            closed: Arc::default(),
            seen: Arc::default(),
        };
        let (m, n, closed, seen) = (e.mode.clone(), e.connections.clone(), e.closed.clone(), e.seen.clone());
        std::thread::spawn(move || {
            let mut hung: Vec<Box<dyn Conn>> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !closed.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let count = n.fetch_add(1, Ordering::SeqCst);
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let mut s: Box<dyn Conn> = match &tls {
                    Some(cfg) => {
                        Box::new(rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), tcp))
                    }
                    None => Box::new(tcp),
                };
                let head = read_head(s.as_mut());
                let request = parse_head(s.sni(), &head);
                let host_matches_sni = match (&request.sni, request.header("host")) {
                    (Some(sni), Some(host)) => host_part(host).eq_ignore_ascii_case(sni),
                    _ => false,
                };
                if !head.is_empty() {
                    seen.lock().unwrap().push(request);
                }
                let status = match m.load(Ordering::SeqCst) {
                    0 => "200 OK",
                    1 => "503 Service Unavailable",
                    2 => {
                        hung.push(s);
                        continue;
                    }
                    4 => {
                        std::thread::sleep(Duration::from_millis(60));
                        "200 OK"
                    }
                    5 if count % 3 == 2 => "200 OK",
                    5 => "503 Service Unavailable",
                    6 if host_matches_sni => "200 OK",
                    6 => "421 Misdirected Request",
                    _ if count % 2 == 0 => "200 OK",
                    _ => "503 Service Unavailable",
                };
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = s.flush();
            }
            // Dropping the listener makes the port refuse connections.
        });
        e
    }

    /// The requests received so far.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wait until the port refuses, so the test's clock starts at the real failure.
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "endpoint {} never closed", self.addr);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// The host part of a Host header value (`name`, `name:port`, `[v6]:port`).
fn host_part(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    }
}

/// An HTTP check of `url` with this test's timing.
fn http_check(url: &str) -> String {
    format!(
        "type = \"http\"\nurl = \"{url}\"\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\nrise = {RISE}\nfall = {FALL}\n",
        INTERVAL.as_millis(),
        TIMEOUT.as_millis()
    )
}

/// A config: `[health]` settings, then regions with their optional check tables, and the
/// failover service over primary and backup.
fn config(health: &str, regions: &[(&str, &str, &str, Option<String>)]) -> String {
    let mut c = format!("[zones]\ndirectory = \"zones\"\n[health]\n{health}\n");
    for (name, addr, priority, check) in regions {
        c.push_str(&format!("[regions.{name}]\naddresses = [\"{addr}\"]\npriority = {priority}\n"));
        if let Some(check) = check {
            c.push_str(&format!("[regions.{name}.check]\n{check}"));
        }
    }
    c.push_str("[services.\"app.svc.test\"]\nregions = [\"primary\", \"backup\"]\npolicy = \"failover\"\nttl = 5\n");
    c
}

struct Setup {
    _dir: TempDir,
    config: std::path::PathBuf,
    server: Server,
}

fn start(config_text: &str) -> Setup {
    let dir = TempDir::new("prober");
    dir.write("zones/svc.test.zone", ZONE);
    let config = dir.write("gslbd.toml", config_text);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    Setup { _dir: dir, config, server }
}

/// The addresses answered for app.svc.test A, sorted.
fn answer(server: &Server) -> Vec<String> {
    let r = udp(server.dns, &query("app.svc.test.", RecordType::A));
    let mut v: Vec<String> = r.answers.iter().map(|rr| rr.data.to_string()).collect();
    v.sort();
    v
}

/// Queries every 5 ms until the answer is `want`; returns how long that took.
fn wait_answer(server: &Server, want: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = answer(server);
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "answer still {got:?}, not {want:?}, after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Queries for `span`, asserting every answer is `want`.
fn hold_answer(server: &Server, want: &[&str], span: Duration) {
    let start = Instant::now();
    while start.elapsed() < span {
        let got = answer(server);
        assert_eq!(got, want, "answer changed after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The transition log lines of a region (`region health changed`).
fn transitions(server: &Server, region: &str) -> Vec<String> {
    let tag = format!("region=\"{region}\"");
    server
        .log()
        .lines()
        .filter(|l| l.contains("region health changed") && l.contains(&tag))
        .map(str::to_string)
        .collect()
}

fn wait_transitions(server: &Server, region: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = transitions(server, region);
        if t.len() >= n {
            return t;
        }
        assert!(Instant::now() < deadline, "{region}: {} transitions, wanted {n}:\n{}", t.len(), server.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Time for a failing region to leave the answers: fall probes, the last one possibly cut
/// at the timeout, plus one interval of slack.
fn fall_bound() -> Duration {
    INTERVAL * FALL + TIMEOUT + INTERVAL
}

fn two_checked_regions(health: &str, primary: &Endpoint, backup: &Endpoint) -> String {
    config(
        health,
        &[
            ("primary", PRIMARY, "1", Some(http_check(&primary.url()))),
            ("backup", BACKUP, "2", Some(http_check(&backup.url()))),
        ],
    )
}

#[test]
fn a_failing_region_leaves_the_answers_within_fall_and_returns_after_rise() {
    let (primary, backup) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    let s = start(&two_checked_regions("", &primary, &backup));
    assert_eq!(answer(&s.server), [PRIMARY]);
    wait_transitions(&s.server, "primary", 1);

    primary.set(Mode::Down);
    let t = wait_answer(&s.server, &[BACKUP], WAIT);
    assert!(t <= fall_bound(), "503: failover took {t:?}, bound {:?}", fall_bound());
    let log = wait_transitions(&s.server, "primary", 2);
    assert!(log[1].contains("from=healthy to=unhealthy reason=status 503"), "{}", log[1]);

    primary.set(Mode::Up);
    let t = wait_answer(&s.server, &[PRIMARY], WAIT);
    assert!(t <= INTERVAL * (RISE + 1) + INTERVAL, "back after {t:?}");
    assert!(t >= INTERVAL.mul_f64(0.9), "rise 2 needs two probes, came back after {t:?}");

    // A closed endpoint (connection refused) fails the same way.
    primary.close();
    let t = wait_answer(&s.server, &[BACKUP], WAIT);
    assert!(t <= fall_bound(), "closed: failover took {t:?}");
    let log = wait_transitions(&s.server, "primary", 4);
    assert!(log[3].contains("to=unhealthy reason=connection refused"), "{}", log[3]);
}

#[test]
fn a_hung_endpoint_times_out_and_dns_latency_is_unaffected() {
    let (primary, backup) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    let s = start(&two_checked_regions("", &primary, &backup));
    wait_transitions(&s.server, "primary", 1);

    primary.set(Mode::Hang);
    let hung_at = Instant::now();
    // While probes hang, answers come as fast as ever.
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        answer(&s.server);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(worst < Duration::from_millis(50), "slowest of 50 queries while probes hang: {worst:?}");
    wait_answer(&s.server, &[BACKUP], WAIT);
    let elapsed = hung_at.elapsed();
    assert!(elapsed <= fall_bound(), "hung: failover after {elapsed:?}, bound {:?}", fall_bound());
    let log = wait_transitions(&s.server, "primary", 2);
    assert!(log[1].contains(&format!("reason=timeout after {}ms", TIMEOUT.as_millis())), "{}", log[1]);
}

#[test]
fn a_flapping_endpoint_does_not_flap_the_answer() {
    let (primary, backup) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    let s = start(&two_checked_regions("", &primary, &backup));
    wait_transitions(&s.server, "primary", 1);
    let before = primary.connections();
    primary.set(Mode::Flap);
    hold_answer(&s.server, &[PRIMARY], INTERVAL * 15);
    assert!(primary.connections() - before >= 10, "probes kept coming: {}", primary.connections() - before);
    assert_eq!(transitions(&s.server, "primary").len(), 1, "only unknown -> healthy");
}

#[test]
fn a_tcp_check_on_a_closed_port_fails_fast_as_refused() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = |a: SocketAddr| {
        format!(
            "type = \"tcp\"\naddress = \"{a}\"\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\nrise = {RISE}\nfall = {FALL}\n",
            INTERVAL.as_millis(),
            TIMEOUT.as_millis()
        )
    };
    let started = Instant::now();
    let s = start(&config(
        "",
        &[("primary", PRIMARY, "1", Some(tcp(closed))), ("backup", BACKUP, "2", Some(tcp(open.local_addr().unwrap())))],
    ));
    let t = wait_answer(&s.server, &[BACKUP], WAIT);
    let log = wait_transitions(&s.server, "primary", 1);
    assert!(log[0].contains("from=unknown to=unhealthy reason=connection refused"), "{}", log[0]);
    // The first probe comes within one interval, then fall - 1 more; refused costs nothing.
    assert!(t <= INTERVAL * (FALL + 1), "tcp refused: out after {t:?} (start took {:?})", started.elapsed());
    assert!(!s.server.log().contains("reason=timeout"), "refused is not a timeout");
    let log = wait_transitions(&s.server, "backup", 1);
    assert!(log[0].contains("from=unknown to=healthy"), "{}", log[0]);
}

#[test]
fn unknown_up_answers_at_once_and_unknown_down_waits_for_proof() {
    // unknown = "up" (default): a region with a failing endpoint is still answered right
    // after start, until fall probes have failed.
    let failing = Endpoint::start(Mode::Down);
    let s = start(&config(
        "",
        &[("primary", PRIMARY, "1", Some(http_check(&failing.url()))), ("backup", BACKUP, "2", None)],
    ));
    assert_eq!(answer(&s.server), [PRIMARY], "unknown = up answers before any verdict");
    wait_answer(&s.server, &[BACKUP], WAIT);
    drop(s);

    // unknown = "down": a healthy region is withheld until rise probes passed.
    let healthy = Endpoint::start(Mode::Up);
    let s = start(&config(
        "unknown = \"down\"",
        &[("primary", PRIMARY, "1", Some(http_check(&healthy.url()))), ("backup", BACKUP, "2", None)],
    ));
    assert_eq!(answer(&s.server), [BACKUP], "unknown = down withholds the region before any verdict");
    let t = wait_answer(&s.server, &[PRIMARY], WAIT);
    assert!(t <= INTERVAL * (RISE + 1), "proven healthy after {t:?}");
}

#[test]
fn reload_keeps_unchanged_regions_and_stops_removed_ones() {
    let (primary, backup, extra) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    // unknown = down makes a reset visible: a region restarted from unknown would leave
    // the answers until it proved itself again.
    let before = config(
        "unknown = \"down\"",
        &[
            ("primary", PRIMARY, "1", Some(http_check(&primary.url()))),
            ("backup", BACKUP, "2", Some(http_check(&backup.url()))),
            ("extra", "192.0.2.3", "3", Some(http_check(&extra.url()))),
        ],
    );
    let s = start(&before);
    wait_answer(&s.server, &[PRIMARY], WAIT);
    // (All unknown is fail-open, which answers primary too: wait for its verdict.)
    wait_transitions(&s.server, "primary", 1);
    wait_transitions(&s.server, "extra", 1);
    wait_transitions(&s.server, "backup", 1);

    // Remove extra; change backup's check (rise 3); keep primary as it was.
    let after = config(
        "unknown = \"down\"",
        &[
            ("primary", PRIMARY, "1", Some(http_check(&primary.url()))),
            ("backup", BACKUP, "2", Some(http_check(&backup.url()).replace("rise = 2", "rise = 3"))),
        ],
    );
    std::fs::write(&s.config, after).unwrap();
    s.server.signal("HUP");
    s.server.wait_log("health checks applied kept=1 started=1 stopped=2");
    s.server.wait_log("reloaded");
    let extra_calls = extra.connections();
    hold_answer(&s.server, &[PRIMARY], INTERVAL * 8);
    assert_eq!(extra.connections(), extra_calls, "the removed region is not probed any more");
    assert_eq!(transitions(&s.server, "primary").len(), 1, "primary kept its state");
    // backup's check changed but its verdict was kept: no second unknown -> healthy.
    assert_eq!(transitions(&s.server, "backup").len(), 1, "backup kept its verdict");
    s.server.wait_log("resumed=1");
}

/// [`two_checked_regions`] with slower checks (interval 500ms, timeout 400ms): tests that
/// hold an answer through a reload or restart must not see a healthy region fall to three
/// timeouts in a row when the machine is loaded.
fn two_slow_checked_regions(health: &str, primary: &Endpoint, backup: &Endpoint) -> String {
    let fast = format!("interval = \"{}ms\"\ntimeout = \"{}ms\"\n", INTERVAL.as_millis(), TIMEOUT.as_millis());
    let text = two_checked_regions(health, primary, backup);
    assert!(text.contains(&fast));
    text.replace(&fast, "interval = \"500ms\"\ntimeout = \"400ms\"\n")
}

/// How long the reload and restart tests hold an answer: more than the 3 probes (fall) or
/// 2 probes (rise) an unknown region needed before the fix.
const HOLD: Duration = Duration::from_millis(2500);

#[test]
fn a_reload_that_changes_a_check_keeps_a_dead_region_out_of_the_answers() {
    let (dead, alive) = (Endpoint::start(Mode::Down), Endpoint::start(Mode::Up));
    let s = start(&two_slow_checked_regions("", &dead, &alive));
    wait_answer(&s.server, &[BACKUP], WAIT);
    let log = wait_transitions(&s.server, "primary", 1);
    assert!(log[0].contains("to=unhealthy"), "{}", log[0]);

    // Only the dead region's timeout changes (400ms -> 300ms).
    let text = two_slow_checked_regions("", &dead, &alive);
    let changed = text.replacen("timeout = \"400ms\"", "timeout = \"300ms\"", 1);
    assert_ne!(text, changed);
    std::fs::write(&s.config, changed).unwrap();
    s.server.signal("HUP");
    // Before the fix its check restarted as unknown (answered) for fall probes.
    hold_answer(&s.server, &[BACKUP], HOLD);
    s.server.wait_log("resumed=1");
    assert_eq!(transitions(&s.server, "primary").len(), 1, "no unknown -> unhealthy a second time");
}

#[test]
fn a_reload_that_changes_checks_keeps_healthy_regions_with_unknown_down() {
    let (dead, alive) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    let text = two_slow_checked_regions("unknown = \"down\"", &dead, &alive)
        .replace("ttl = 5\n", "ttl = 5\nwhen_all_down = \"servfail\"\n");
    let s = start(&text);
    wait_answer(&s.server, &[PRIMARY], WAIT);
    wait_transitions(&s.server, "primary", 1);
    wait_transitions(&s.server, "backup", 1);

    // Both timeouts change. Before the fix: SERVFAIL while both were unknown, then backup
    // (proven first), then primary again.
    std::fs::write(&s.config, text.replace("timeout = \"400ms\"", "timeout = \"300ms\"")).unwrap();
    s.server.signal("HUP");
    hold_answer(&s.server, &[PRIMARY], HOLD);
    s.server.wait_log("resumed=2");
    assert_eq!((transitions(&s.server, "primary").len(), transitions(&s.server, "backup").len()), (1, 1));
}

/// A restart starts from the verdicts saved in the state directory: a dead region is not
/// answered again while its first probes are in flight. A corrupt file is a log line.
#[test]
fn a_restart_starts_from_the_saved_verdicts() {
    let (dead, alive) = (Endpoint::start(Mode::Down), Endpoint::start(Mode::Up));
    let dir = TempDir::new("restart");
    dir.write("zones/svc.test.zone", ZONE);
    let config = dir.write("gslbd.toml", &two_slow_checked_regions("", &dead, &alive));
    let args = ["--config", config.to_str().unwrap()];
    let mut first = Server::start(&args);
    wait_answer(&first, &[BACKUP], WAIT);
    let saved = first.state_dir.path().join("health.json");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("\"unhealthy\"") && t.contains("\"healthy\"")) {
        assert!(Instant::now() < deadline, "health.json never had both verdicts:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Killed (SIGKILL), as a crash would: nothing is written on the way out.
    let state = std::mem::replace(&mut first.state_dir, TempDir::new("unused"));
    drop(first);
    let mut second = Server::try_start_in(&args, state).unwrap();
    // Before the fix the dead region started unknown (answered) until fall probes failed.
    hold_answer(&second, &[BACKUP], HOLD);
    second.wait_log("restoring saved health verdicts");
    assert!(transitions(&second, "primary").is_empty(), "it stayed unhealthy: no transition");

    // A clean shutdown saves what was known (not the empty table of a stopped prober).
    second.signal("TERM");
    assert_eq!(second.wait_exit(), Some(0));
    let text = std::fs::read_to_string(second.state_dir.path().join("health.json")).unwrap();
    assert!(text.contains("\"unhealthy\"") && text.contains("\"healthy\""), "{text}");

    // A corrupt file: gslbd starts, says so, and the regions start unknown.
    let state = std::mem::replace(&mut second.state_dir, TempDir::new("unused"));
    drop(second);
    std::fs::write(state.path().join("health.json"), "{\"version\": 1, \"regions\": [").unwrap();
    let third = Server::try_start_in(&args, state).unwrap();
    third.wait_log("saved health verdicts ignored");
    wait_answer(&third, &[BACKUP], WAIT);
    // Started unknown: the prober's first verdict is a transition from unknown (a restored
    // verdict would give none, as in the restart above).
    let t = wait_transitions(&third, "primary", 1);
    assert!(t[0].contains("from=unknown to=unhealthy"), "{t:?}");
}

#[test]
fn an_endpoint_failing_two_probes_in_three_leaves_the_answers_by_the_window_rule() {
    let (primary, backup) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
    let text = two_checked_regions("", &primary, &backup);
    // fall = 3 alone never fires on this endpoint (at most two failures in a row).
    let windowed = text.replacen("fall = 3\n", "fall = 3\nwindow = 6\nwindow_failures = 3\n", 1);
    assert_ne!(text, windowed);
    let s = start(&windowed);
    wait_answer(&s.server, &[PRIMARY], WAIT);
    wait_transitions(&s.server, "primary", 1);

    primary.set(Mode::Intermittent);
    let t = wait_answer(&s.server, &[BACKUP], WAIT);
    // 3 failures among the next 6 probes at most, plus an interval of slack.
    assert!(t <= INTERVAL * 6 + TIMEOUT + INTERVAL, "left after {t:?}");
    let log = wait_transitions(&s.server, "primary", 2);
    // (The reason is the latest failure: a 503, or a timeout when the machine is loaded.)
    assert!(log[1].contains("from=healthy to=unhealthy reason="), "{}", log[1]);
    // It never has rise = 2 successes in a row, so it stays out.
    hold_answer(&s.server, &[BACKUP], INTERVAL * 12);
    // Healthy again after two passes in a row.
    primary.set(Mode::Up);
    wait_answer(&s.server, &[PRIMARY], WAIT);
}

/// Deliverable measurement, not a check: failover time with the default check settings
/// (interval 2s, timeout 1s, rise 2, fall 3), from closing the primary's health endpoint to
/// the first answer without it. Run with
/// `cargo test --test prober measure_default_failover -- --ignored --nocapture`.
#[test]
#[ignore = "takes about 30 s; a measurement for bench/README.md"]
fn measure_default_failover() {
    let mut times = Vec::new();
    for run in 0..4 {
        let (primary, backup) = (Endpoint::start(Mode::Up), Endpoint::start(Mode::Up));
        let check = |e: &Endpoint| format!("type = \"http\"\nurl = \"{}\"\n", e.url());
        let s = start(&config(
            "",
            &[("primary", PRIMARY, "1", Some(check(&primary))), ("backup", BACKUP, "2", Some(check(&backup)))],
        ));
        wait_transitions(&s.server, "primary", 1);
        // Kill at a random point of the probe cycle.
        std::thread::sleep(Duration::from_millis(300 + 450 * run));
        let mode = if run % 2 == 0 { "closed (refused)" } else { "hung (timeouts)" };
        let t0 = Instant::now();
        if run % 2 == 0 {
            primary.close();
        } else {
            primary.set(Mode::Hang);
        }
        let t = wait_answer(&s.server, &[BACKUP], Duration::from_secs(15)).max(t0.elapsed());
        eprintln!("run {run}: endpoint {mode}: first answer without it after {:.2} s", t.as_secs_f64());
        times.push(t);
        assert!(t <= Duration::from_secs(8));
    }
    eprintln!("failover times: {times:?}");
}

/// Writes a test CA (`ca.pem`) and a leaf certificate signed by it (`leaf.pem`, `leaf.key`)
/// for probe.test, www.example.test, localhost and 127.0.0.1 (not 127.0.14.x) into `dir`,
/// as an operator's own PKI would have (a self-signed CA certificate may not be the leaf).
fn test_pki(dir: &TempDir) {
    common::pki::ca(dir.path());
    let names = "subjectAltName=DNS:probe.test,DNS:www.example.test,DNS:localhost,IP:127.0.0.1";
    common::pki::leaf(dir.path(), "leaf", "/CN=probe.test", names);
}

/// A TLS server config with the leaf certificate of [`test_pki`].
fn tls_server_config(dir: &TempDir) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.path().join("leaf.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// Python's https server with the certificate of [`test_pki`], answering 200 "ok".
fn https_server(dir: &TempDir) -> common::pki::HttpsServer {
    test_pki(dir);
    common::pki::HttpsServer::start(dir.path(), "leaf", "ok")
}

#[test]
fn https_checks_verify_certificates_as_configured() {
    let dir = TempDir::new("https");
    dir.write("zones/svc.test.zone", ZONE);
    let tls = https_server(&dir);
    let url = format!("https://127.0.0.1:{}/health", tls.port);
    let check = |extra: &str| {
        format!(
            "type = \"https\"\nurl = \"{url}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n{extra}"
        )
    };
    // (region, check options, expected verdict)
    let cases = [
        ("insecure", check("tls_insecure = true\n"), "healthy"),
        ("system-roots", check(""), "unhealthy"),
        ("own-ca", check("tls_ca_file = \"ca.pem\"\ntls_server_name = \"probe.test\"\n"), "healthy"),
        ("own-ca-ip", check("tls_ca_file = \"ca.pem\"\n"), "healthy"),
        ("wrong-name", check("tls_ca_file = \"ca.pem\"\ntls_server_name = \"other.test\"\n"), "unhealthy"),
    ];
    let mut cfg = String::from("[zones]\ndirectory = \"zones\"\n[health]\nunknown = \"down\"\n");
    for (i, (name, check, _)) in cases.iter().enumerate() {
        cfg.push_str(&format!(
            "[regions.{name}]\naddresses = [\"192.0.2.{}\"]\n[regions.{name}.check]\n{check}",
            10 + i
        ));
    }
    let names: Vec<String> = cases.iter().map(|c| format!("\"{}\"", c.0)).collect();
    cfg.push_str(&format!(
        "[services.\"app.svc.test\"]\nregions = [{}]\npolicy = \"multivalue\"\nmultivalue = {{ count = 5 }}\n",
        names.join(", ")
    ));
    let config = dir.write("gslbd.toml", &cfg);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let admin = server.admin.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = json(&http(admin, "GET", "/v1/status", None, None).1);
        let verdict = |name: &str| {
            let r = status["regions"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone();
            (r["health"].as_str().unwrap().to_string(), r["reason"].as_str().unwrap_or("").to_string())
        };
        let all: Vec<(&str, (String, String))> = cases.iter().map(|c| (c.0, verdict(c.0))).collect();
        if cases.iter().zip(&all).all(|(c, (_, (h, _)))| h == c.2) {
            for (name, (_, reason)) in &all {
                if ["system-roots", "wrong-name"].contains(name) {
                    assert!(reason.to_lowercase().contains("tls"), "{name}: reason {reason:?}");
                }
            }
            break;
        }
        assert!(Instant::now() < deadline, "verdicts: {all:?}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only the regions whose certificate checks pass are answered.
    let mut got = answer(&server);
    got.sort();
    assert_eq!(got, ["192.0.2.10", "192.0.2.12", "192.0.2.13"]);
    // Probe results, durations and transitions are in the metrics.
    let metrics = http(admin, "GET", "/metrics", None, None).1;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value("gslbd_probe_results_total{region=\"system-roots\",result=\"tls\"}") >= 1.0, "{metrics}");
    assert!(value("gslbd_probe_results_total{region=\"insecure\",result=\"ok\"}") >= 1.0, "{metrics}");
    assert!(value("gslbd_probe_duration_seconds_count{region=\"insecure\"}") >= 1.0, "{metrics}");
    assert_eq!(value("gslbd_health_transitions_total{region=\"wrong-name\",to=\"unhealthy\"}"), 1.0, "{metrics}");
    assert_eq!(value("gslbd_health_transitions_total{region=\"own-ca\",to=\"healthy\"}"), 1.0, "{metrics}");
}

/// The latency policy on the real prober: the answer is the region whose health endpoint
/// answers fastest, it follows when the RTTs change by more than the margin, and it stays
/// put while they differ by less (noise). With no margin the last step flaps.
#[test]
fn latency_answers_the_fastest_region_and_holds_it_through_noise() {
    let primary = Endpoint::start(Mode::Slow);
    let backup = Endpoint::start(Mode::Up);
    let mut text = config(
        "",
        &[
            ("primary", PRIMARY, "1", Some(http_check(&primary.url()))),
            ("backup", BACKUP, "1", Some(http_check(&backup.url()))),
        ],
    );
    text = text.replace("policy = \"failover\"", "policy = \"latency\"");
    text.push_str("[services.\"app.svc.test\".latency]\nmargin_ms = 20\n");
    let s = start(&text);
    wait_answer(&s.server, &[BACKUP], WAIT);
    // The choice does not depend on the client: ECS scope 0.
    let r = udp(s.server.dns, &with_edns(query("app.svc.test.", RecordType::A), 1232, Some("81.2.69.0/24")));
    let scope = match r.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
        Some(EdnsOption::Subnet(cs)) => Some(cs.scope_prefix()),
        _ => None,
    };
    assert_eq!(scope, Some(0), "{r:?}");
    // The near region becomes far and the far one near: the answer follows.
    primary.set(Mode::Up);
    backup.set(Mode::Slow);
    wait_answer(&s.server, &[PRIMARY], WAIT);
    // Both near: their RTTs differ by noise, well under the 20 ms margin; no flapping.
    backup.set(Mode::Up);
    hold_answer(&s.server, &[PRIMARY], Duration::from_secs(2));
}

/// A config of one region per (name, check) and a failover service over them all;
/// `[health] unknown = "down"` so only proven regions are answered.
fn regions_config(cases: &[(&str, String)]) -> String {
    let mut cfg = String::from("[zones]\ndirectory = \"zones\"\n[health]\nunknown = \"down\"\n");
    for (i, (name, check)) in cases.iter().enumerate() {
        cfg.push_str(&format!(
            "[regions.{name}]\naddresses = [\"192.0.2.{}\"]\n[regions.{name}.check]\n{check}",
            10 + i
        ));
    }
    let names: Vec<String> = cases.iter().map(|c| format!("\"{}\"", c.0)).collect();
    cfg.push_str(&format!(
        "[services.\"app.svc.test\"]\nregions = [{}]\npolicy = \"multivalue\"\nmultivalue = {{ count = 8 }}\n\
         when_all_down = \"servfail\"\n",
        names.join(", ")
    ));
    cfg
}

/// The operator's report: an HTTPS server behind one address serving www.example.test,
/// answering 421 unless Host names the SNI (as virtual hosts do). Probing it with
/// `tls_server_name` must send that name as Host too, and `host_header` alone must also
/// set the SNI (and so the certificate name), as `curl --connect-to` does.
#[test]
fn an_https_probe_sends_the_server_name_as_host_and_the_host_header_as_sni() {
    let dir = TempDir::new("sni");
    dir.write("zones/svc.test.zone", ZONE);
    test_pki(&dir);
    let site = Endpoint::start_on("127.0.14.1:0", Some(tls_server_config(&dir)), Mode::HostMustMatchSni);
    let check = |extra: &str| {
        format!(
            "type = \"https\"\nurl = \"https://{}/health\"\ntls_ca_file = \"ca.pem\"\ninterval = \"200ms\"\n\
             timeout = \"150ms\"\nrise = 1\nfall = 1\n{extra}",
            site.addr
        )
    };
    let cases = [
        ("sni", check("tls_server_name = \"www.example.test\"\n")),
        ("host", check("host_header = \"www.example.test\"\n")),
    ];
    let config = dir.write("gslbd.toml", &regions_config(&cases));
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    wait_answer(&server, &["192.0.2.10", "192.0.2.11"], WAIT);
    assert!(transitions(&server, "sni").iter().chain(&transitions(&server, "host")).all(|l| l.contains("to=healthy")));
    let seen = site.seen();
    let port = site.addr.port();
    assert!(seen.iter().any(|s| s.header("host") == Some(&format!("www.example.test:{port}"))), "{seen:?}");
    assert!(seen.iter().any(|s| s.header("host") == Some("www.example.test")), "{seen:?}");
    assert!(seen.iter().all(|s| s.sni.as_deref() == Some("www.example.test")), "{seen:?}\n{}", server.log());
}

/// For every probe option, the bytes on the wire (SNI, request line with path and query,
/// Host, the operator's headers) are what the equivalent curl command sends: both are run
/// against endpoints that record what they receive, and compared field by field (and with
/// the value the README's table "option -> request" promises).
#[test]
fn probe_requests_match_what_curl_sends() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        return missing_tool("curl");
    }
    let dir = TempDir::new("wire");
    dir.write("zones/svc.test.zone", ZONE);
    test_pki(&dir);
    let tls = tls_server_config(&dir);
    // Addresses of their own (127.0.14.2) so the default ports 80 and 443 are free to bind.
    let h = Endpoint::start_on("127.0.14.2:0", None, Mode::Up);
    let h80 = Endpoint::start_on("127.0.14.2:80", None, Mode::Up);
    let hl = Endpoint::start_on("127.0.0.1:0", None, Mode::Up);
    let s = Endpoint::start_on("127.0.14.2:0", Some(tls.clone()), Mode::Up);
    let s443 = Endpoint::start_on("127.0.14.2:443", Some(tls.clone()), Mode::Up);
    let sl = Endpoint::start_on("127.0.0.1:0", Some(tls), Mode::Up);
    let (p, pl, q, ql) = (h.addr.port(), hl.addr.port(), s.addr.port(), sl.addr.port());
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    // (case, endpoint, check keys, curl arguments, want: SNI, request line, Host)
    type Want<'a> = (Option<&'a str>, String, String);
    let cases: Vec<(&str, &Endpoint, String, String, Want)> = vec![
        (
            "http_ip",
            &h,
            format!("type = \"http\"\nurl = \"http://127.0.14.2:{p}/health?x=1&y\"\n"),
            format!("'http://127.0.14.2:{p}/health?x=1&y'"),
            (None, "GET /health?x=1&y HTTP/1.1".into(), format!("127.0.14.2:{p}")),
        ),
        (
            "http_default_port",
            &h80,
            "type = \"http\"\nurl = \"http://127.0.14.2/health#frag\"\n".into(),
            "http://127.0.14.2/health#frag".into(),
            (None, "GET /health HTTP/1.1".into(), "127.0.14.2".into()),
        ),
        (
            "http_name",
            &hl,
            format!("type = \"http\"\nurl = \"http://localhost:{pl}/n\"\n"),
            format!("http://localhost:{pl}/n"),
            (None, "GET /n HTTP/1.1".into(), format!("localhost:{pl}")),
        ),
        (
            "http_host_header",
            &h,
            format!("type = \"http\"\nurl = \"http://127.0.14.2:{p}/\"\nhost_header = \"www.example.test\"\n"),
            format!("-H 'Host: www.example.test' http://127.0.14.2:{p}/"),
            (None, "GET / HTTP/1.1".into(), "www.example.test".into()),
        ),
        (
            "http_head",
            &h,
            format!("type = \"http\"\nurl = \"http://127.0.14.2:{p}/h\"\nmethod = \"HEAD\"\n"),
            format!("-I http://127.0.14.2:{p}/h"),
            (None, "HEAD /h HTTP/1.1".into(), format!("127.0.14.2:{p}")),
        ),
        (
            "https_ip",
            &s,
            format!("type = \"https\"\nurl = \"https://127.0.14.2:{q}/s?q=1\"\ntls_insecure = true\n"),
            format!("-k 'https://127.0.14.2:{q}/s?q=1'"),
            (None, "GET /s?q=1 HTTP/1.1".into(), format!("127.0.14.2:{q}")),
        ),
        (
            "https_name",
            &sl,
            format!("type = \"https\"\nurl = \"https://localhost:{ql}/n\"\ntls_ca_file = \"ca.pem\"\n"),
            format!("--cacert {ca} https://localhost:{ql}/n"),
            (Some("localhost"), "GET /n HTTP/1.1".into(), format!("localhost:{ql}")),
        ),
        (
            "https_sni",
            &s,
            format!(
                "type = \"https\"\nurl = \"https://127.0.14.2:{q}/health\"\ntls_ca_file = \"ca.pem\"\n\
                 tls_server_name = \"www.example.test\"\n"
            ),
            format!(
                "--cacert {ca} --connect-to www.example.test:{q}:127.0.14.2:{q} https://www.example.test:{q}/health"
            ),
            (Some("www.example.test"), "GET /health HTTP/1.1".into(), format!("www.example.test:{q}")),
        ),
        (
            "https_sni_default_port",
            &s443,
            "type = \"https\"\nurl = \"https://127.0.14.2/health\"\ntls_ca_file = \"ca.pem\"\n\
             tls_server_name = \"www.example.test\"\n"
                .into(),
            format!("--cacert {ca} --connect-to www.example.test:443:127.0.14.2:443 https://www.example.test/health"),
            (Some("www.example.test"), "GET /health HTTP/1.1".into(), "www.example.test".into()),
        ),
        (
            "https_host_header",
            &s,
            format!(
                "type = \"https\"\nurl = \"https://127.0.14.2:{q}/\"\ntls_ca_file = \"ca.pem\"\n\
                 host_header = \"www.example.test\"\n"
            ),
            format!(
                "--cacert {ca} --connect-to www.example.test:{q}:127.0.14.2:{q} -H 'Host: www.example.test' \
                 https://www.example.test:{q}/"
            ),
            (Some("www.example.test"), "GET / HTTP/1.1".into(), "www.example.test".into()),
        ),
        (
            "https_both",
            &s,
            format!(
                "type = \"https\"\nurl = \"https://127.0.14.2:{q}/\"\ntls_ca_file = \"ca.pem\"\n\
                 tls_server_name = \"probe.test\"\nhost_header = \"www.example.test\"\n"
            ),
            format!(
                "--cacert {ca} --connect-to probe.test:{q}:127.0.14.2:{q} -H 'Host: www.example.test' \
                 https://probe.test:{q}/"
            ),
            (Some("probe.test"), "GET / HTTP/1.1".into(), "www.example.test".into()),
        ),
        (
            "https_head_headers",
            &s,
            format!(
                "type = \"https\"\nurl = \"https://127.0.14.2:{q}/a/b?c=d\"\ntls_insecure = true\n\
                 method = \"HEAD\"\nheaders = {{ X-Probe = \"gslbd\" }}\n"
            ),
            format!("-k -I -H 'X-Probe: gslbd' 'https://127.0.14.2:{q}/a/b?c=d'"),
            (None, "HEAD /a/b?c=d HTTP/1.1".into(), format!("127.0.14.2:{q}")),
        ),
    ];
    let timing = "interval = \"200ms\"\ntimeout = \"150ms\"\nrise = 1\nfall = 1\n";
    let checks: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, _, keys, _, _)| {
            // Every check names its case in a header, so requests can be told apart.
            let keys = if keys.contains("headers = {") {
                keys.replace("headers = { ", &format!("headers = {{ X-Case = \"{name}\", "))
            } else {
                format!("{keys}headers = {{ X-Case = \"{name}\" }}\n")
            };
            (*name, format!("{keys}{timing}"))
        })
        .collect();
    let config = dir.write("gslbd.toml", &regions_config(&checks[..8]));
    let config2 = dir.write("gslbd2.toml", &regions_config(&checks[8..]));
    let servers = [config, config2].map(|c| Server::start(&["--config", c.to_str().unwrap()]));
    for (name, endpoint, _, curl, _) in &cases {
        let cmd = format!("curl -s -o /dev/null --max-time 3 -H 'X-Case: {name}' {curl}");
        let out = std::process::Command::new("sh").args(["-c", &cmd]).output().unwrap();
        assert!(endpoint.seen().iter().any(|s| s.header("x-case") == Some(name)), "{cmd}: {out:?}");
    }
    let deadline = Instant::now() + WAIT;
    for (name, endpoint, _, curl, (sni, line, host)) in &cases {
        let of = |probe: bool| {
            endpoint.seen().into_iter().find(|s| {
                s.header("x-case") == Some(name)
                    && s.header("user-agent").is_some_and(|u| u.starts_with("gslbd/")) == probe
            })
        };
        let probe = loop {
            if let Some(p) = of(true) {
                break p;
            }
            assert!(Instant::now() < deadline, "{name}: no probe arrived\n{}{}", servers[0].log(), servers[1].log());
            std::thread::sleep(Duration::from_millis(20));
        };
        let by_hand = of(false).unwrap();
        let fields = |s: &Seen| {
            let mine: Vec<(String, String)> = s.headers.iter().filter(|(k, _)| k.starts_with("x-")).cloned().collect();
            (s.sni.clone(), s.line.clone(), s.header("host").map(str::to_string), mine)
        };
        assert_eq!(fields(&probe), fields(&by_hand), "{name}: probe vs curl {curl}");
        assert_eq!(
            (probe.sni.as_deref(), probe.line.as_str(), probe.header("host")),
            (*sni, line.as_str(), Some(host.as_str())),
            "{name}"
        );
        assert_eq!(probe.header("user-agent"), Some(concat!("gslbd/", env!("CARGO_PKG_VERSION"))));
    }
}

/// Fail-open is for health verdicts that may be wrong: it answers regions the probes call
/// down, never one the operator forced down (issue 10, part 5, with real verdicts).
#[test]
fn fail_open_answers_unhealthy_regions_but_never_forced_ones() {
    let (primary, backup) = (Endpoint::start(Mode::Down), Endpoint::start(Mode::Down));
    let dir = TempDir::new("prober");
    dir.write("zones/svc.test.zone", ZONE);
    dir.write("admin.token", "ops:fail-open-test\n");
    let text = two_checked_regions("", &primary, &backup) + "[admin]\ntoken_file = \"admin.token\"\n";
    let config = dir.write("gslbd.toml", &text);
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let admin = s.admin.unwrap();
    let mode = || {
        let v = json(&http(admin, "GET", "/v1/status", None, None).1);
        v["services"][0]["mode"].as_str().unwrap().to_string()
    };
    // Both endpoints answer 503: once both verdicts are in, the service fails open and
    // failover answers the best priority, unhealthy as it is.
    let deadline = Instant::now() + fall_bound() * 3;
    while mode() != "fail-open" {
        assert!(Instant::now() < deadline, "never failed open: {}", mode());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answer(&s), [PRIMARY]);
    // The operator forces primary down: failing open goes on over backup alone.
    let token = Some("fail-open-test");
    let (code, body) = http(admin, "POST", "/v1/regions/primary/force", token, Some(r#"{"state": "down"}"#));
    assert_eq!(code, 200, "{body}");
    assert_eq!(answer(&s), [BACKUP]);
    // Both forced down: nothing is answered (NODATA), whatever failing open would do.
    http(admin, "POST", "/v1/regions/backup/force", token, Some(r#"{"state": "down"}"#));
    let r = udp(s.dns, &query("app.svc.test.", RecordType::A));
    assert!(r.answers.is_empty() && r.authorities.len() == 1, "NODATA with the SOA: {r:?}");
}
