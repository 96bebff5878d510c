//! The demo's topology end to end: three regions, each a real HAProxy (from
//! deploy/demo/haproxy.cfg.in) in front of two backends, probed by gslbd running the demo's
//! own configuration (deploy/demo/gslbd.toml, with the probe addresses moved to free ports on
//! 127.0.0.21-23 so the tests and a running demo do not collide). Each test kills or stops
//! something and checks, as a DNS client in London, Seattle or Manila (EDNS Client Subnet),
//! that the answers move to the nearest healthy region within the prober's bound, and back.
//!
//! Needs `haproxy` (Debian package haproxy; tests/run.sh installs it). Without it every test
//! here prints why and passes without checking anything.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::{RData, RecordType};

/// The demo's probe timings (deploy/demo/gslbd.toml): interval 1 s, timeout 500 ms, fall 2,
/// with up to 10% jitter per probe. A region that stops answering leaves the answers within
/// interval x fall + timeout; we allow 2 s more for a loaded machine.
const PROBER_BOUND: Duration = Duration::from_millis(1100 * 2 + 500 + 2000);
/// HAProxy's own backend checks (haproxy.cfg.in): inter 500 ms, fall 2.
const HAPROXY_BOUND: Duration = Duration::from_millis(500 * 2 + 500);

const SEATTLE: &str = "216.160.83.0/24";
const LONDON: &str = "81.2.69.0/24";
const MANILA: &str = "202.196.224.0/24";
const TOKYO_V6: &str = "2001:218::/32";

/// The demo's regions: name, the address gslbd answers with, the test's HAProxy address.
const REGIONS: [(&str, &str, &str); 3] = [
    ("us-east", "127.0.0.11", "127.0.0.21"),
    ("eu-west", "127.0.0.12", "127.0.0.22"),
    ("ap-south", "127.0.0.13", "127.0.0.23"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn haproxy_installed() -> bool {
    let ok = Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !ok {
        missing_tool("haproxy is not installed (apt-get install haproxy)");
    }
    ok
}

/// A free TCP port on `ip` (bound, then released for the caller to bind).
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP backend in a thread: 200 and its name for every request. Stopping it closes
/// its socket, so connections are refused, as when a real backend dies.
struct Backend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start(addr: SocketAddr, name: &str) -> Backend {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Backend { addr, stop, thread: Some(thread) }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)); // wakes accept()
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One region: an HAProxy child (`haproxy -f CFG -db`) in front of two backends.
struct Region {
    name: &'static str,
    listen: SocketAddr,
    cfg: PathBuf,
    log: PathBuf,
    haproxy: Option<Child>,
    backends: Vec<Backend>,
}

impl Region {
    fn start(dir: &TempDir, name: &'static str, ip: &str) -> Region {
        let backends: Vec<Backend> = (1..=2)
            .map(|i| Backend::start(format!("{ip}:0").parse().unwrap(), &format!("{name} backend-{i}")))
            .collect();
        let listen: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().unwrap();
        let template = std::fs::read_to_string(root().join("deploy/demo/haproxy.cfg.in")).unwrap();
        let text = template
            .replace("@REGION@", name)
            .replace("@LISTEN@", &listen.to_string())
            .replace("@BACKEND1@", &backends[0].addr.to_string())
            .replace("@BACKEND2@", &backends[1].addr.to_string());
        assert!(!text.contains('@'), "a placeholder of haproxy.cfg.in is left:\n{text}");
        let cfg = dir.write(&format!("{name}/haproxy.cfg"), &text);
        let log = dir.path().join(format!("{name}/haproxy.log"));
        let mut region = Region { name, listen, cfg, log, haproxy: None, backends };
        region.start_haproxy();
        region
    }

    fn start_haproxy(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&self.cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        self.haproxy = Some(child);
        self.wait_health(200, Duration::from_secs(5));
    }

    fn kill_haproxy(&mut self) {
        if let Some(mut c) = self.haproxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop_backends(&mut self) {
        self.backends.iter_mut().for_each(Backend::stop);
    }

    fn restart_backends(&mut self) {
        for (i, b) in self.backends.iter_mut().enumerate() {
            *b = Backend::start(b.addr, &format!("{} backend-{}", self.name, i + 1));
        }
    }

    /// The status of HAProxy's /health, as gslbd's probe sees it.
    fn health(&self) -> Option<u16> {
        http(self.listen, "GET", "/health", None, None).map(|(status, _)| status)
    }

    /// Waits until /health answers `want`; returns how long it took.
    fn wait_health(&self, want: u16, within: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.health() == Some(want) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!(
            "{}: /health never answered {want} within {within:?} (last: {:?}); haproxy log:\n{log}",
            self.name,
            self.health()
        );
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.kill_haproxy();
    }
}

/// One HTTP/1.1 request; returns the status and body, None if nothing answers.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// The demo: three regions and gslbd with deploy/demo/gslbd.toml pointed at them.
struct Demo {
    regions: Vec<Region>,
    gslbd: Server,
    token: String,
    // Last: removed after every process that uses it has stopped.
    _dir: TempDir,
}

impl Demo {
    fn start(tag: &str) -> Demo {
        let dir = TempDir::new(tag);
        let regions: Vec<Region> = REGIONS.iter().map(|(name, _, ip)| Region::start(&dir, name, ip)).collect();
        // The demo's configuration with the probes aimed at this test's HAProxies and the
        // relative paths made absolute; each edit must apply, or the demo config changed shape.
        let mut cfg = std::fs::read_to_string(root().join("deploy/demo/gslbd.toml")).unwrap();
        let root_s = root().to_str().unwrap();
        let mut edits = vec![
            ("\"../../".to_string(), format!("\"{root_s}/")),
            ("\"admin.token\"".to_string(), format!("\"{root_s}/deploy/demo/admin.token\"")),
        ];
        for ((_, answer, _), region) in REGIONS.iter().zip(&regions) {
            edits.push((format!("\"http://{answer}:8080/health\""), format!("\"http://{}/health\"", region.listen)));
        }
        for (from, to) in edits {
            assert!(cfg.contains(&from), "deploy/demo/gslbd.toml no longer contains {from}");
            cfg = cfg.replace(&from, &to);
        }
        let cfg = dir.write("gslbd.toml", &cfg);
        let state = dir.path().join("state");
        let gslbd = Server::start(&[
            "--config",
            cfg.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        let token_line = std::fs::read_to_string(root().join("deploy/demo/admin.token")).unwrap();
        let token_line = token_line.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap();
        let token = token_line.split_once(':').map_or(token_line, |(_, secret)| secret).trim().to_string();
        Demo { regions, gslbd, token, _dir: dir }
    }

    fn region(&mut self, name: &str) -> &mut Region {
        self.regions.iter_mut().find(|r| r.name == name).unwrap()
    }

    /// The addresses gslbd answers for `name` to a client in `ecs`, sorted.
    fn answer(&self, name: &str, qtype: RecordType, ecs: Option<&str>) -> Vec<String> {
        let r = udp(self.gslbd.dns, &with_edns(query(name, qtype), 1232, ecs));
        let mut v: Vec<String> = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.to_string()),
                RData::AAAA(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Waits until the answer for `name` to a client in `ecs` is `want`; returns how long it
    /// took. Panics after `within`, with the last answer and gslbd's log.
    fn wait_answer(&self, name: &str, ecs: Option<&str>, want: &str, within: Duration) -> Duration {
        let t0 = Instant::now();
        let mut last = Vec::new();
        while t0.elapsed() < within {
            last = self.answer(name, RecordType::A, ecs);
            if last == [want] {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} for {ecs:?}: wanted {want} within {within:?}, last answer {last:?}");
    }

    fn admin(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        let addr: SocketAddr = (self.gslbd.ready_line.split_whitespace())
            .find_map(|f| f.strip_prefix("admin="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no admin=ADDR in the ready line: {}", self.gslbd.ready_line));
        http(addr, method, path, token, body).unwrap_or_else(|| panic!("admin API: no answer to {method} {path}"))
    }

    /// How often each address answers `api.demo.test` in `n` queries.
    fn api_counts(&self, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            for a in self.answer("api.demo.test.", RecordType::A, None) {
                *counts.entry(a).or_default() += 1;
            }
        }
        counts
    }
}

/// Everyone where the demo's geo map sends them while all regions are up.
fn assert_home(d: &Demo) {
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(SEATTLE)), ["127.0.0.11"], "Seattle");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(LONDON)), ["127.0.0.12"], "London");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"], "Manila");
    assert_eq!(d.answer("www.demo.test.", RecordType::AAAA, Some(TOKYO_V6)), ["2001:db8::13"], "Tokyo");
    assert_eq!(d.answer("db.demo.test.", RecordType::A, None), ["127.0.0.11"], "db: the first priority");
}

#[test]
fn killed_haproxy_moves_its_clients_to_the_nearest_healthy_region_and_back() {
    if !haproxy_installed() {
        return;
    }
    let mut d = Demo::start("demo-kill");
    assert_home(&d);

    d.region("us-east").kill_haproxy();
    // Seattle is nearer London (7,700 km) than Singapore (12,900 km); db fails over to the
    // second priority. Nobody else moves.
    let took = d.wait_answer("www.demo.test.", Some(SEATTLE), "127.0.0.12", PROBER_BOUND);
    d.wait_answer("db.demo.test.", None, "127.0.0.12", PROBER_BOUND);
    eprintln!("us-east HAProxy killed: Seattle moved to eu-west in {took:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(LONDON)), ["127.0.0.12"]);
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);
    for _ in 0..50 {
        assert!(!d.api_counts(1).contains_key("127.0.0.11"), "weighted answers still include the dead region");
    }

    // Started again: two good probes (rise 2) and the clients come back.
    d.region("us-east").start_haproxy();
    let took = d.wait_answer("www.demo.test.", Some(SEATTLE), "127.0.0.11", PROBER_BOUND);
    eprintln!("us-east HAProxy restarted: Seattle back in {took:?}");
    d.wait_answer("db.demo.test.", None, "127.0.0.11", PROBER_BOUND);
    assert_home(&d);
}

#[test]
fn region_whose_backends_all_die_fails_its_health_url_and_loses_its_clients() {
    if !haproxy_installed() {
        return;
    }
    let mut d = Demo::start("demo-backends");
    assert_home(&d);

    // HAProxy itself stays up; only its backends go. Its /health turns 503 ...
    d.region("eu-west").stop_backends();
    let took = d.region("eu-west").wait_health(503, HAPROXY_BOUND + Duration::from_secs(2));
    eprintln!("eu-west backends stopped: /health 503 after {took:?}");
    // ... and London goes to the nearest healthy region: Washington (5,900 km), not
    // Singapore (10,900 km).
    let took = d.wait_answer("www.demo.test.", Some(LONDON), "127.0.0.11", PROBER_BOUND);
    eprintln!("eu-west unhealthy: London moved to us-east in {took:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(SEATTLE)), ["127.0.0.11"]);
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);

    // One backend back is enough for HAProxy, and then for gslbd.
    d.region("eu-west").restart_backends();
    d.region("eu-west").wait_health(200, HAPROXY_BOUND + Duration::from_secs(2));
    let took = d.wait_answer("www.demo.test.", Some(LONDON), "127.0.0.12", PROBER_BOUND);
    eprintln!("eu-west backends back: London returned in {took:?}");
    assert_home(&d);
}
#[test]
fn drained_region_leaves_weighted_and_geo_answers_until_undrained() {
    if !haproxy_installed() {
        return;
    }
    let d = Demo::start("demo-drain");
    let before = d.api_counts(300);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["127.0.0.11", "127.0.0.12", "127.0.0.13"], "{before:?}");

    // Changes need the demo's token.
    let (status, _) = d.admin("POST", "/v1/regions/ap-south/drain", None, None);
    assert_eq!(status, 401, "drain without a token");
    let (status, body) = d.admin("POST", "/v1/regions/ap-south/drain", Some(&d.token), None);
    assert_eq!(status, 200, "drain: {body}");

    let drained = d.api_counts(300);
    assert_eq!(
        drained.keys().collect::<Vec<_>>(),
        ["127.0.0.11", "127.0.0.12"],
        "a drained region was answered: {drained:?}"
    );
    // Drained, every policy skips it while others are healthy: Manila goes to the nearest
    // other region, London (10,700 km), not Washington (13,700 km).
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.12"]);
    // The status says why: healthy, but drained by an operator.
    let (_, body) = d.admin("GET", "/v1/status", None, None);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let region = status["regions"].as_array().unwrap().iter().find(|r| r["name"] == "ap-south").unwrap();
    assert_eq!(region["up"], true, "{region}");
    assert_eq!(region["override"]["drained"], true, "{region}");

    let (status, body) = d.admin("POST", "/v1/regions/ap-south/undrain", Some(&d.token), None);
    assert_eq!(status, 200, "undrain: {body}");
    let after = d.api_counts(300);
    assert!(after.get("127.0.0.13").is_some_and(|&n| n > 20), "ap-south did not come back: {after:?}");
    assert_eq!(d.answer("www.demo.test.", RecordType::A, Some(MANILA)), ["127.0.0.13"]);
}
