//! Cluster mode when etcd half-works (issue 12): an instance on the minority side (the only
//! member it reaches has lost quorum: connections open, calls hang or fail) keeps
//! answering, goes standalone within the lease TTL and refuses writes; and a write whose
//! answer from etcd is lost after it was committed is read back and answered 200, not
//! "nothing changed".
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::etcd::{EtcdCluster, gslb_config};
use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

const TOKEN: &str = "test-token-ops";
const US: &str = "192.0.2.11";
const EU: &str = "192.0.2.12";

/// failover.svc.test's first address, or None when the query failed (1 s).
fn answer(s: &Server) -> Option<String> {
    let q = query("failover.svc.test.", RecordType::A).to_bytes().unwrap();
    let r = udp_raw(s.dns, &q, Duration::from_secs(1))?;
    Some(first_a(&Message::from_bytes(&r).ok()?))
}

fn status(s: &Server) -> serde_json::Value {
    json(&http(s.admin.unwrap(), "GET", "/v1/status", None, None).1)
}

fn admin(s: &Server, method: &str, path: &str) -> (u16, String) {
    http(s.admin.unwrap(), method, path, Some(TOKEN), None)
}

/// Polls `check` every 20 ms until it holds or `limit` has passed; how long it took.
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Acceptance 3's "minority side of a partition": A reaches one member only, and the other
/// two die, so that member is alive without quorum. A never stops answering, is standalone
/// within the lease TTL, refuses a write with 503 and does not apply it; /readyz stays 200.
/// Quorum back: A rejoins and takes writes that reach B.
#[test]
fn on_the_minority_side_an_instance_answers_goes_standalone_and_refuses_writes() {
    if !common::etcd::need_etcd() {
        return;
    }
    let mut etcd = EtcdCluster::start(3);
    let dir = TempDir::new("cluster-minority");
    let prefix = format!("/t{}-m", std::process::id());
    let all = etcd.endpoints();
    let a = Server::start(&["--config", &gslb_config(&dir, "a", &all[..1], &prefix, "")]);
    let b = Server::start(&["--config", &gslb_config(&dir, "b", &all, &prefix, "")]);
    for s in [&a, &b] {
        until("joined", Duration::from_secs(10), || status(s)["cluster"]["connected"] == true);
        assert_eq!(answer(s).as_deref(), Some(US));
    }

    etcd.kill(1);
    etcd.kill(2);
    let lost = Instant::now();
    // Answers go on, unchanged, every 50 ms through the lease TTL and past it.
    let (mut asked, mut failed, mut other) = (0, 0, 0);
    let mut standalone_after = None;
    while lost.elapsed() < Duration::from_secs(6) {
        for s in [&a, &b] {
            asked += 1;
            match answer(s) {
                None => failed += 1,
                Some(x) if x != US => other += 1,
                Some(_) => {}
            }
        }
        if standalone_after.is_none() && status(&a)["cluster"]["standalone"] == true {
            standalone_after = Some(lost.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "minority side: {asked} queries, {failed} failed, {other} other answers; A standalone after {standalone_after:?}"
    );
    assert_eq!((failed, other), (0, 0));
    // Lease TTL 3 s, counted from etcd's last answer. When the member A reaches was the
    // leader, it goes on renewing leases (without consensus) until it steps down for want
    // of a quorum, one election timeout (1 s in tests/common/etcd.rs) after the kill.
    let after = standalone_after.expect("A never went standalone on the minority side");
    assert!(after <= Duration::from_millis(4500), "standalone after {after:?}");
    let v = status(&a);
    assert_eq!(v["cluster"]["connected"], false, "{v}");
    assert_eq!(http(a.admin.unwrap(), "GET", "/readyz", None, None).0, 200);

    // A write is refused, and nobody applies it, then or once quorum is back.
    let (code, text) = admin(&a, "POST", "/v1/regions/us-east/drain");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(answer(&a).as_deref(), Some(US));

    etcd.restart(1);
    etcd.restart(2);
    etcd.wait_healthy(&[0, 1, 2]);
    until("A connected again", Duration::from_secs(15), || status(&a)["cluster"]["connected"] == true);
    assert_eq!(answer(&a).as_deref(), Some(US), "the refused write was applied after all");
    assert_eq!(answer(&b).as_deref(), Some(US), "the refused write reached B");
    // And writes work again through A, reaching B.
    until("a write through A accepted", Duration::from_secs(10), || {
        admin(&a, "POST", "/v1/regions/us-east/drain").0 == 200
    });
    until("B applies A's drain", Duration::from_secs(1), || answer(&b).as_deref() == Some(EU));
}

/// What the proxy does to etcd's answers.
const PASS: u8 = 0;
/// Drop the answer to the next txn (the write reaches etcd), then pass again.
const LOSE_NEXT_TXN: u8 = 1;
/// Drop the answer to the next txn and to every txn or range after it.
const LOSE_FROM_TXN: u8 = 2;
/// Drop every answer to a txn or a range.
const LOSE_KV: u8 = 3;
/// Refuse watches (the connection is closed before the request reaches etcd).
const NO_WATCH: u8 = 4;

/// A TCP proxy on loopback in front of one etcd member that can lose etcd's answers after
/// the request went through: it closes the client's connection instead of passing the
/// answer on, as a cut link or a crashed load balancer would.
struct LossyProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    /// The client side of every watch stream passed on, so they can be cut.
    watches: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl LossyProxy {
    fn start(upstream: SocketAddr) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let stop = Arc::new(AtomicBool::new(false));
        let watches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (m, st, ws) = (mode.clone(), stop.clone(), watches.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let lose = Arc::new(AtomicBool::new(false));
                // Requests: passed on; a request the mode says to answer-lose arms `lose`.
                let (mut from, mut to, m2, l2) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), m.clone(), lose.clone());
                let (ws2, watch_end) = (ws.clone(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let chunk = &buf[..n];
                        let has = |p: &[u8]| chunk.windows(p.len()).any(|w| w == p);
                        if has(b"/v3/watch") {
                            if m2.load(Ordering::Relaxed) == NO_WATCH {
                                break;
                            }
                            ws2.lock().unwrap().push(watch_end.try_clone().unwrap());
                        }
                        let arm = match m2.load(Ordering::Relaxed) {
                            LOSE_NEXT_TXN => {
                                has(b"/v3/kv/txn")
                                    && m2
                                        .compare_exchange(LOSE_NEXT_TXN, PASS, Ordering::Relaxed, Ordering::Relaxed)
                                        .is_ok()
                            }
                            LOSE_FROM_TXN => {
                                has(b"/v3/kv/txn")
                                    && m2
                                        .compare_exchange(LOSE_FROM_TXN, LOSE_KV, Ordering::Relaxed, Ordering::Relaxed)
                                        .is_ok()
                            }
                            LOSE_KV => has(b"/v3/kv/txn") || has(b"/v3/kv/range"),
                            _ => false,
                        };
                        if arm {
                            l2.store(true, Ordering::Relaxed);
                        }
                        if to.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = watch_end.shutdown(Shutdown::Both);
                });
                // Answers: passed back unless armed; then dropped and both sides closed.
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if lose.load(Ordering::Relaxed) {
                            break;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        LossyProxy { addr, mode, stop, watches }
    }

    /// Closes every watch stream passed on so far and refuses new ones.
    fn cut_watches(&self) {
        self.mode.store(NO_WATCH, Ordering::Relaxed);
        for w in self.watches.lock().unwrap().drain(..) {
            let _ = w.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// A write committed in etcd whose answer never reaches gslbd: read back and found, so
/// 200, applied once, and the audit log has one line. When even the read back gets no
/// answer: 503 saying it may have been made (it was: every instance shows it once etcd's
/// answers flow again), never "nothing changed"; which is what a lost answer to the read
/// before any write gets.
#[test]
fn a_committed_write_whose_answer_is_lost_is_found_and_not_called_unchanged() {
    if !common::etcd::need_etcd() {
        return;
    }
    let etcd = EtcdCluster::start(3);
    let proxy = LossyProxy::start(etcd.client(0));
    let dir = TempDir::new("cluster-lost-answer");
    let prefix = format!("/t{}-x", std::process::id());
    let a = Server::start(&["--config", &gslb_config(&dir, "a", &[format!("http://{}", proxy.addr)], &prefix, "")]);
    let b = Server::start(&["--config", &gslb_config(&dir, "b", &etcd.endpoints(), &prefix, "")]);
    for s in [&a, &b] {
        until("joined", Duration::from_secs(10), || status(s)["cluster"]["connected"] == true);
    }

    proxy.mode.store(LOSE_NEXT_TXN, Ordering::Relaxed);
    let (code, text) = admin(&a, "POST", "/v1/regions/us-east/drain");
    assert_eq!(code, 200, "{text}\n{}", a.log());
    assert_eq!(proxy.mode.load(Ordering::Relaxed), PASS, "the proxy never saw the txn");
    assert!(a.log().contains("a write whose answer was lost was found committed"), "{}", a.log());
    assert_eq!(answer(&a).as_deref(), Some(EU));
    until("B applies the drain", Duration::from_secs(1), || answer(&b).as_deref() == Some(EU));
    let audit = std::fs::read_to_string(a.state_dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains("\"drain\"")).count(), 1, "{audit}");

    proxy.mode.store(LOSE_FROM_TXN, Ordering::Relaxed);
    let (code, text) = admin(&a, "POST", "/v1/regions/us-east/undrain");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("may have been made") && !text.contains("nothing changed"), "{text}");
    // It was made: B has it from the watch, and so does A once it can read again.
    until("B applies the undrain", Duration::from_secs(1), || answer(&b).as_deref() == Some(US));
    proxy.mode.store(PASS, Ordering::Relaxed);
    until("A applies the undrain from its watch", Duration::from_secs(10), || answer(&a).as_deref() == Some(US));

    // A read that gets no answer before anything was written changed nothing, and says so.
    proxy.mode.store(LOSE_KV, Ordering::Relaxed);
    let (code, text) = admin(&a, "POST", "/v1/regions/us-east/drain");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    proxy.mode.store(PASS, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((answer(&a).as_deref(), answer(&b).as_deref()), (Some(US), Some(US)));
}

/// A watch that resumes at a revision etcd has compacted away lists again: A's watch is
/// cut while B makes changes and etcd compacts past them; A then converges on etcd's
/// overrides, through a fresh list.
#[test]
fn a_watch_resumed_past_a_compaction_lists_again() {
    if !common::etcd::need_etcd() {
        return;
    }
    let etcd = EtcdCluster::start(3);
    let proxy = LossyProxy::start(etcd.client(0));
    let dir = TempDir::new("cluster-compacted");
    let prefix = format!("/t{}-c", std::process::id());
    let a = Server::start(&["--config", &gslb_config(&dir, "a", &[format!("http://{}", proxy.addr)], &prefix, "")]);
    let b = Server::start(&["--config", &gslb_config(&dir, "b", &etcd.endpoints(), &prefix, "")]);
    for s in [&a, &b] {
        until("joined", Duration::from_secs(10), || status(s)["cluster"]["connected"] == true);
    }
    // The watch works: a change through B reaches A.
    assert_eq!(admin(&b, "POST", "/v1/regions/us-east/drain").0, 200);
    until("A applies B's drain", Duration::from_secs(1), || answer(&a).as_deref() == Some(EU));

    proxy.cut_watches();
    // Changes A's watch does not see; the last leaves us-east drained and eu-west weighted 7.
    for path in ["/v1/regions/us-east/undrain", "/v1/regions/us-east/drain"] {
        assert_eq!(admin(&b, "POST", path).0, 200);
    }
    let (code, text) =
        http(b.admin.unwrap(), "PUT", "/v1/regions/eu-west/weight", Some(TOKEN), Some(r#"{"weight": 7}"#));
    assert_eq!(code, 200, "{text}");
    // Compact everything up to now.
    let (code, text) = etcd.post(0, "/v3/kv/range", r#"{"key":"AA=="}"#);
    assert_eq!(code, 200, "{text}");
    let revision = json(&text)["header"]["revision"].as_str().unwrap().to_string();
    let (code, text) = etcd.post(0, "/v3/kv/compaction", &format!(r#"{{"revision":"{revision}","physical":true}}"#));
    assert_eq!(code, 200, "{text}");

    proxy.mode.store(PASS, Ordering::Relaxed);
    until("A lists again after the compaction", Duration::from_secs(5), || {
        a.log().contains("watch revision compacted; listing again")
    });
    until("A has eu-west's weight 7", Duration::from_secs(2), || {
        let v = status(&a);
        let eu = v["regions"].as_array().unwrap().iter().find(|r| r["name"] == "eu-west").cloned().unwrap();
        eu["weight"]["effective"] == 7
    });
    assert_eq!(answer(&a).as_deref(), Some(EU));
}
