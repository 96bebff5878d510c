//! `dns.udp_steering`: with "cpu", a datagram goes to the UDP worker of the CPU that received
//! it; with the default "hash", the kernel spreads clients over the workers. Checked on the
//! real binary through its per-worker counter, `gslbd_udp_worker_datagrams_total`.
//!
//! On loopback the kernel delivers a datagram on the sender's CPU, so a client thread pinned
//! to CPU c stands for a network card queue handled by CPU c.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

fn config(dir: &TempDir, steering: &str) -> String {
    let zones = test_zones();
    let text = format!(
        "[dns]\nudp_workers = 2\nudp_steering = \"{steering}\"\n\n[zones]\ndirectory = \"{}\"\n",
        zones.display()
    );
    dir.write("gslbd.toml", &text).to_str().unwrap().to_string()
}

/// Datagrams received per worker, from /metrics.
fn per_worker(s: &Server) -> Vec<u64> {
    let text = http(s.admin.unwrap(), "GET", "/metrics", None, None).1;
    let mut counts = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("gslbd_udp_worker_datagrams_total{")) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        let worker: usize = series.split('"').nth(1).unwrap().parse().unwrap();
        assert_eq!(worker, counts.len(), "workers in order: {text}");
        counts.push(v.parse().unwrap());
    }
    counts
}

/// The CPUs this test may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: plain old data, filled in by the kernel within its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }, 0);
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Sends `n` queries from each of `clients` sockets (source ports), in a thread pinned to
/// `cpu`, and checks every answer.
fn ask_from_cpu(s: &Server, cpu: usize, clients: usize, n: usize) {
    let dns = s.dns;
    std::thread::spawn(move || {
        // SAFETY: as above; pins only this thread.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        assert_eq!(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) }, 0);
        let mut buf = [0u8; 1500];
        for _ in 0..clients {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
            for _ in 0..n {
                let q = query("host.pub.test.", RecordType::A);
                sock.send_to(&q.to_bytes().unwrap(), dns).unwrap();
                let len = sock.recv(&mut buf).unwrap();
                let r = Message::from_bytes(&buf[..len]).unwrap();
                assert_eq!((r.metadata.id, r.metadata.response_code), (q.metadata.id, ResponseCode::NoError));
            }
        }
    })
    .join()
    .unwrap();
}

#[test]
fn cpu_steering_sends_each_datagram_to_the_worker_of_its_cpu() {
    let dir = TempDir::new("steer");
    let s = Server::start(&["--config", &config(&dir, "cpu")]);
    assert_eq!(per_worker(&s), vec![0, 0]);
    // A card that cannot spread its receive work is named at start (this machine's own).
    let unspread = gslbd::frontend::udp::unspread_interfaces(std::path::Path::new("/sys/class/net"));
    for iface in &unspread {
        s.wait_log(&format!("{iface} has one receive queue and no RPS"));
    }
    if unspread.is_empty() {
        assert!(!s.log().contains("has one receive queue"), "{}", s.log());
    }
    // The allowed CPUs are dealt to the workers in turn: the first to worker 0, the second
    // to worker 1. With one CPU only, worker 0 takes everything.
    let cpus = allowed_cpus();
    let mut expected = vec![0u64, 0];
    // Ten clients per CPU: hashed, they would land on both workers.
    for (i, &cpu) in cpus.iter().take(2).enumerate() {
        ask_from_cpu(&s, cpu, 10, 4);
        expected[i % 2] += 40;
        assert_eq!(per_worker(&s), expected, "after 40 queries from CPU {cpu} (allowed CPUs {cpus:?})");
    }
}

#[test]
fn hash_steering_spreads_clients_over_the_workers() {
    let dir = TempDir::new("steer");
    let s = Server::start(&["--config", &config(&dir, "hash")]);
    // 40 clients (source ports), all from the same CPU: the hash still uses both workers.
    let cpu = allowed_cpus()[0];
    ask_from_cpu(&s, cpu, 40, 1);
    let counts = per_worker(&s);
    assert_eq!(counts.iter().sum::<u64>(), 40, "{counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "every worker got some of 40 clients: {counts:?}");
}

#[test]
fn a_bad_steering_value_is_a_config_error_with_its_line() {
    let dir = TempDir::new("steer");
    let path = config(&dir, "round-robin");
    let out = std::process::Command::new(bin()).args(["check", "--config", &path]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("gslbd.toml:3:"), "{log}");
    assert!(log.contains("dns.udp_steering: \"round-robin\" is not a choice"), "{log}");
}

#[test]
fn a_steering_change_on_reload_waits_for_a_restart_and_says_so() {
    let dir = TempDir::new("steer");
    let s = Server::start(&["--config", &config(&dir, "hash")]);
    config(&dir, "cpu");
    s.signal("HUP");
    s.wait_log("dns.udp_workers or dns.udp_steering changed; the change takes effect at the next restart");
    // Still answering, still hashing: 40 clients from one CPU reach both workers.
    ask_from_cpu(&s, allowed_cpus()[0], 40, 1);
    let counts = per_worker(&s);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn cpu_steering_with_more_workers_than_cpus_says_which_get_nothing() {
    let dir = TempDir::new("steer");
    let cpus = allowed_cpus().len();
    let text = format!(
        "[dns]\nudp_workers = {}\nudp_steering = \"cpu\"\n\n[zones]\ndirectory = \"{}\"\n",
        cpus + 1,
        test_zones().display()
    );
    let path = dir.write("gslbd.toml", &text);
    let s = Server::start(&["--config", path.to_str().unwrap()]);
    s.wait_log(&format!("more UDP workers than CPUs gslbd may run on; workers {cpus} and up will get no datagrams"));
    assert_eq!(per_worker(&s).len(), cpus + 1);
}
