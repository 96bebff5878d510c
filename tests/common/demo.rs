//! The demo's topology for tests: three regions, each a real HAProxy (from
//! deploy/demo/haproxy.cfg.in) in front of two backends, and gslbd running the demo's own
//! configuration pointed at them. Shared by tests/demo.rs and tests/load.rs.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};

use super::*;

/// The demo's probe timings (deploy/demo/gslbd.toml): interval 1 s, timeout 500 ms, fall 2,
/// with up to 10% jitter per probe. A region that stops answering leaves the answers within
/// interval x fall + timeout; we allow 2 s more for a loaded machine.
pub const PROBER_BOUND: Duration = Duration::from_millis(1100 * 2 + 500 + 2000);
/// HAProxy's own backend checks (haproxy.cfg.in): inter 500 ms, fall 2.
pub const HAPROXY_BOUND: Duration = Duration::from_millis(500 * 2 + 500);

pub const SEATTLE: &str = "216.160.83.0/24";
pub const LONDON: &str = "81.2.69.0/24";
pub const MANILA: &str = "202.196.224.0/24";
pub const TOKYO_V6: &str = "2001:218::/32";

/// The demo's regions: name, the address gslbd answers with, the test's HAProxy address.
pub const REGIONS: [(&str, &str, &str); 3] = [
    ("us-east", "127.0.0.11", "127.0.0.21"),
    ("eu-west", "127.0.0.12", "127.0.0.22"),
    ("ap-south", "127.0.0.13", "127.0.0.23"),
];

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn haproxy_installed() -> bool {
    let ok = Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !ok {
        missing_tool("haproxy is not installed (apt-get install haproxy)");
    }
    ok
}

/// A free TCP port on `ip` (bound, then released for the caller to bind).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP backend in a thread: 200 and its name for every request. Stopping it closes
/// its socket, so connections are refused, as when a real backend dies.
pub struct Backend {
    pub addr: SocketAddr,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(addr: SocketAddr, name: &str) -> Backend {
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

    pub fn stop(&mut self) {
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
pub struct Region {
    pub name: &'static str,
    pub listen: SocketAddr,
    pub cfg: PathBuf,
    pub log: PathBuf,
    pub haproxy: Option<Child>,
    pub backends: Vec<Backend>,
}

impl Region {
    pub fn start(dir: &TempDir, name: &'static str, ip: &str) -> Region {
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

    pub fn start_haproxy(&mut self) {
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

    pub fn kill_haproxy(&mut self) {
        if let Some(mut c) = self.haproxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop_backends(&mut self) {
        self.backends.iter_mut().for_each(Backend::stop);
    }

    pub fn restart_backends(&mut self) {
        for (i, b) in self.backends.iter_mut().enumerate() {
            *b = Backend::start(b.addr, &format!("{} backend-{}", self.name, i + 1));
        }
    }

    /// The status of HAProxy's /health, as gslbd's probe sees it.
    pub fn health(&self) -> Option<u16> {
        http_opt(self.listen, "GET", "/health", None, None).map(|(status, _)| status)
    }

    /// Waits until /health answers `want`; returns how long it took.
    pub fn wait_health(&self, want: u16, within: Duration) -> Duration {
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
pub fn http_opt(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
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
pub struct Demo {
    pub regions: Vec<Region>,
    pub gslbd: Server,
    pub token: String,
    // Last: removed after every process that uses it has stopped.
    pub _dir: TempDir,
}

impl Demo {
    pub fn start(tag: &str) -> Demo {
        Demo::start_with(tag, |cfg| cfg)
    }

    /// The demo with its configuration passed through `edit` after the test's own edits.
    pub fn start_with(tag: &str, edit: impl FnOnce(String) -> String) -> Demo {
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
            edits.push((format!("\"http://{answer}:8080/stats\""), format!("\"http://{}/stats\"", region.listen)));
        }
        for (from, to) in edits {
            assert!(cfg.contains(&from), "deploy/demo/gslbd.toml no longer contains {from}");
            cfg = cfg.replace(&from, &to);
        }
        let cfg = dir.write("gslbd.toml", &edit(cfg));
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

    pub fn region(&mut self, name: &str) -> &mut Region {
        self.regions.iter_mut().find(|r| r.name == name).unwrap()
    }

    /// The addresses gslbd answers for `name` to a client in `ecs`, sorted.
    pub fn answer(&self, name: &str, qtype: RecordType, ecs: Option<&str>) -> Vec<String> {
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
    pub fn wait_answer(&self, name: &str, ecs: Option<&str>, want: &str, within: Duration) -> Duration {
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

    pub fn admin(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        let addr: SocketAddr = (self.gslbd.ready_line.split_whitespace())
            .find_map(|f| f.strip_prefix("admin="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no admin=ADDR in the ready line: {}", self.gslbd.ready_line));
        http_opt(addr, method, path, token, body).unwrap_or_else(|| panic!("admin API: no answer to {method} {path}"))
    }

    /// How often each address answers `api.demo.test` in `n` queries.
    pub fn api_counts(&self, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            for a in self.answer("api.demo.test.", RecordType::A, None) {
                *counts.entry(a).or_default() += 1;
            }
        }
        counts
    }
}
