//! Test harness: starts the real gslbd binary on free loopback ports, waits for its ready
//! line, and talks to it with real clients. The child is killed on drop; if the test failed,
//! its log is printed so the failure can be read without re-running.
// Helpers of a test crate: a panic is how they report failure.
#![allow(dead_code, clippy::unwrap_used)]

pub mod demo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gslbd")
}

/// A real etcd cluster on loopback (tests/cluster.rs).
pub mod etcd;

/// A test CA and leaf certificates made with openssl.
pub mod pki;

// The library's own temp-dir helper: one copy for unit and integration tests.
#[path = "../../src/testutil.rs"]
mod testutil;
pub use testutil::TempDir;

/// A tool a test needs is missing. tests/run.sh installs every one, so this fails the test
/// (a test that skips would pass without checking anything) unless GSLBD_TEST_ALLOW_SKIP=1
/// is set, to run the rest of the suite on a machine without the tool.
pub fn missing_tool(what: &str) {
    if std::env::var_os("GSLBD_TEST_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: {what}");
    } else {
        panic!("{what}: tests/run.sh installs it (or set GSLBD_TEST_ALLOW_SKIP=1 to skip this test)");
    }
}

/// The test zones shipped in tests/zones.
pub fn test_zones() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zones")
}

/// A running gslbd.
pub struct Server {
    child: Option<Child>,
    pub dns: SocketAddr,
    /// The admin API's address (every test server has one, on a free port).
    pub admin: Option<SocketAddr>,
    /// The server's own state directory (overrides, audit log), removed on drop.
    pub state_dir: TempDir,
    pub ready_line: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts gslbd with these arguments plus `--listen 127.0.0.1:0` (unless given).
    pub fn start(args: &[&str]) -> Server {
        Self::try_start(args).unwrap_or_else(|(code, log)| panic!("gslbd did not start (exit {code:?}):\n{log}"))
    }

    /// Starts gslbd; on failure returns its exit code and what it printed.
    pub fn try_start(args: &[&str]) -> Result<Server, (Option<i32>, String)> {
        let state_dir = TempDir::new("state");
        Self::try_start_in(args, state_dir)
    }

    /// Starts gslbd with this state directory (to restart on the same saved state).
    pub fn try_start_in(args: &[&str], state_dir: TempDir) -> Result<Server, (Option<i32>, String)> {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        if !args.contains(&"--listen") && !args.contains(&"check") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(state_dir.path());
        }
        cmd.env("GSLBD_LOG", "debug").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gslbd");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if line.starts_with("ready ") {
                    let _ = tx.send(line);
                }
            }
        });
        match rx.recv_timeout(WAIT) {
            Ok(line) => {
                let dns = parse_ready(&line).expect("ready line names a udp address");
                let admin = line.split_whitespace().find_map(|f| f.strip_prefix("admin=")).and_then(|a| a.parse().ok());
                Ok(Server { child: Some(child), dns, admin, state_dir, ready_line: line, log })
            }
            Err(_) => {
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut code = None;
                while Instant::now() < deadline {
                    if let Ok(Some(s)) = child.try_wait() {
                        code = s.code();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let text = log.lock().unwrap().clone();
                Err((code, text))
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args(["-s", sig, &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("gslbd did not exit within {WAIT:?}");
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("log never contained {needle:?}:\n{}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- gslbd log -----\n{}\n---------------------", self.log());
        }
    }
}

/// `ready dns=127.0.0.1:5300/udp,127.0.0.1:5300/tcp` -> 127.0.0.1:5300.
pub fn parse_ready(line: &str) -> Option<SocketAddr> {
    let dns = line.split_whitespace().find_map(|f| f.strip_prefix("dns="))?;
    dns.split(',').find_map(|a| a.strip_suffix("/udp")).and_then(|a| a.parse().ok())
}

/// Builds a query message.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m
}

/// Adds EDNS with this payload size, optionally with a Client Subnet option ("81.2.69.0/24").
pub fn with_edns(mut m: Message, payload: u16, ecs: Option<&str>) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    if let Some(s) = ecs {
        let (addr, prefix) = s.split_once('/').unwrap();
        let cs = ClientSubnet::new(addr.parse().unwrap(), prefix.parse().unwrap(), 0);
        e.options_mut().insert(EdnsOption::Subnet(cs));
    }
    m.set_edns(e);
    m
}

pub fn rand_id() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    (t ^ (t >> 16)) as u16
}

/// Sends raw bytes over UDP; returns the raw response, or None after `wait`.
pub fn udp_raw(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    sock.send_to(packet, server).unwrap();
    let mut buf = [0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends a query over UDP and decodes the response.
pub fn udp(server: SocketAddr, m: &Message) -> Message {
    let bytes = m.to_bytes().unwrap();
    let raw = udp_raw(server, &bytes, Duration::from_secs(3)).expect("no UDP response");
    let r = Message::from_bytes(&raw).expect("response decodes");
    assert_eq!(r.metadata.id, m.metadata.id, "response ID");
    r
}

/// Sends queries over one TCP connection (all written at once: pipelined) and reads one
/// response per query.
pub fn tcp(server: SocketAddr, msgs: &[Message]) -> Vec<Message> {
    let mut s = TcpStream::connect_timeout(&server, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    for m in msgs {
        let b = m.to_bytes().unwrap();
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    s.write_all(&out).unwrap();
    msgs.iter().map(|_| Message::from_bytes(&tcp_read(&mut s).expect("TCP response")).unwrap()).collect()
}

/// Reads one length-framed message; None on EOF.
pub fn tcp_read(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Runs dig with these arguments against the server; returns stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first A record of a response, as text (`192.0.2.1`), or `none`.
pub fn first_a(m: &Message) -> String {
    m.answers
        .iter()
        .find_map(|a| match &a.data {
            hickory_proto::rr::RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "none".into())
}

/// The records of a section as `name ttl type rdata` lines, sorted, for exact comparisons.
pub fn lines(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> =
        records.iter().map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)).collect();
    v.sort();
    v
}

/// One HTTP/1.1 request (Connection: close) to the admin API; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_typed(addr, method, path, token, body);
    (status, body)
}

/// [`http`], with the response's media type (its Content-Type without parameters, lower
/// case; empty when there is none): (status, media type, body).
pub fn http_typed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let media = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.to_string() };
    (status, media, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The JSON body of an admin API response.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Serves `body` as JSON to every request, from a thread, for the life of the test process
/// (a load source or webhook peer that always answers the same).
pub fn serve_json(body: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(reply.as_bytes());
        }
    });
    addr
}
