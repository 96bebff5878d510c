//! Start-up, validation, reload and shutdown of the real binary: what an operator sees when
//! the config or a zone is wrong, when they send SIGHUP, and when systemd stops the service.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN A 192.0.2.10\n";

fn run_check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).arg("check").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_says_ok_for_good_data() {
    let (code, out, _) = run_check(&["--zones", test_zones().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "ok: 2 zones, 112 records, 0 services, 0 regions");
}

#[test]
fn check_reports_every_error_with_file_line_and_column() {
    let dir = TempDir::new("check");
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    let zone = dir.write(
        "zones/svc.test.zone",
        "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.300\nwww IN CNAME a\nwww IN A 192.0.2.1\nx.other.test. IN A 192.0.2.2\n",
    );
    let (code, _, err) = run_check(&["--zones", zones.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let z = zone.display();
    assert!(
        err.contains(&format!("{z}:5:10: error: bad A record data: expected an IPv4 address, got \"192.0.2.300\"")),
        "{err}"
    );
    assert!(err.contains(&format!("{z}:8:1: error: owner x.other.test. is outside origin svc.test.")), "{err}");

    let cfg = dir.write("gslbd.toml", "[dns]\nlisten = [\"127.0.0.1:53\"]\nudp_payload = 70000\n");
    let (code, _, err) = run_check(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:3:15: error: dns.udp_payload: 70000 is out of range\n  hint:", cfg.display())),
        "{err}"
    );

    let cfg = dir.write("bad.toml", "[dns]\nlisen = [\"127.0.0.1:53\"]\n");
    let (code, _, err) = run_check(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}:2:1: error: unknown field `lisen`", cfg.display())), "{err}");
}

#[test]
fn zone_level_conflicts_are_errors() {
    let dir = TempDir::new("conflict");
    dir.write(
        "svc.test.zone",
        "$ORIGIN svc.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\nwww IN CNAME a\nwww IN A 192.0.2.1\nd IN A 192.0.2.5\nd IN A 192.0.2.5\n",
    );
    let (code, _, err) = run_check(&["--zones", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains(":7:1: error: www.svc.test. has a CNAME and other data"), "{err}");
    assert!(err.contains(":9:1: error: duplicate A record at d.svc.test. (first at line 8)"), "{err}");
}

#[test]
fn bad_zone_at_start_exits_2_without_serving() {
    let dir = TempDir::new("badstart");
    dir.write(
        "svc.test.zone",
        "$ORIGIN svc.test.\n@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60\nwww 300 IN AAAA not-an-address\n",
    );
    let Err((code, log)) = Server::try_start(&["--zones", dir.path().to_str().unwrap()]) else {
        panic!("started with a broken zone")
    };
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("svc.test.zone:3:"), "{log}");
    assert!(log.contains("not started"), "{log}");
}

#[test]
fn port_in_use_exits_2_naming_the_address() {
    let dir = TempDir::new("inuse");
    dir.write("svc.test.zone", ZONE);
    let first = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    let addr = first.dns.to_string();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    // The UDP side of the first server's port is in use (the sockets use SO_REUSEPORT, but
    // only for their own group); a TCP listener holds the other port.
    let Err((code, log)) = Server::try_start(&["--zones", dir.path().to_str().unwrap(), "--listen", &taken_addr])
    else {
        panic!("started on a port in use")
    };
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains(&format!("cannot listen on {taken_addr}/tcp")), "{log}");
    drop(first);
    let _ = addr;
}

#[test]
fn sighup_reloads_zone_data() {
    let dir = TempDir::new("reload");
    let zone = dir.write("svc.test.zone", ZONE);
    let s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    let r = udp(s.dns, &query("www.svc.test.", RecordType::A));
    assert_eq!(lines(&r.answers), ["www.svc.test. 300 A 192.0.2.10"]);
    std::fs::write(&zone, ZONE.replace("192.0.2.10", "192.0.2.99").replace(" 1 3600", " 2 3600")).unwrap();
    s.signal("HUP");
    s.wait_log("reloaded");
    let r = udp(s.dns, &query("www.svc.test.", RecordType::A));
    assert_eq!(lines(&r.answers), ["www.svc.test. 300 A 192.0.2.99"]);
    // A zone file added to the directory is served after the next reload.
    dir.write("other.test.zone", &ZONE.replace("svc.test.", "other.test."));
    s.signal("HUP");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = udp(s.dns, &query("www.other.test.", RecordType::A));
        if r.metadata.response_code == ResponseCode::NoError {
            break;
        }
        assert!(Instant::now() < deadline, "new zone never served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn broken_reload_keeps_serving_the_last_good_data() {
    let dir = TempDir::new("badreload");
    let zone = dir.write("svc.test.zone", ZONE);
    let s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    std::fs::write(&zone, format!("{ZONE}broken IN A 999.1.1.1\n")).unwrap();
    s.signal("HUP");
    s.wait_log("reload failed; still serving the previous configuration and zones");
    assert!(s.log().contains("svc.test.zone:7:"), "{}", s.log());
    let r = udp(s.dns, &query("www.svc.test.", RecordType::A));
    assert_eq!(lines(&r.answers), ["www.svc.test. 300 A 192.0.2.10"]);
}

#[test]
fn queries_never_fail_during_reloads() {
    let dir = TempDir::new("reloadload");
    dir.write("svc.test.zone", ZONE);
    let s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    let dns = s.dns;
    let asker = std::thread::spawn(move || {
        let mut answered = 0;
        for _ in 0..400 {
            let r = udp(dns, &query("www.svc.test.", RecordType::A));
            assert_eq!(r.answers.len(), 1);
            answered += 1;
        }
        answered
    });
    for _ in 0..10 {
        s.signal("HUP");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(asker.join().unwrap(), 400);
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let dir = TempDir::new("term");
    dir.write("svc.test.zone", ZONE);
    let mut s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
    // An open TCP connection that has been answered does not hold shutdown up.
    let mut conn = std::net::TcpStream::connect(s.dns).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    let q = hickory_proto::serialize::binary::BinEncodable::to_bytes(&query("www.svc.test.", RecordType::A)).unwrap();
    std::io::Write::write_all(&mut conn, &[&(q.len() as u16).to_be_bytes()[..], &q].concat()).unwrap();
    assert!(tcp_read(&mut conn).is_some());
    let started = Instant::now();
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(tcp_read(&mut conn).is_none(), "connection closed");
}

#[test]
fn listens_on_ipv6_and_several_addresses() {
    let dir = TempDir::new("v6");
    dir.write("svc.test.zone", ZONE);
    let s = Server::start(&["--zones", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let v6: std::net::SocketAddr = s
        .ready_line
        .split(&['=', ','][..])
        .find_map(|a| a.strip_suffix("/udp").filter(|a| a.starts_with('[')))
        .expect("ready line names the IPv6 address")
        .parse()
        .unwrap();
    assert_eq!(udp(v6, &query("www.svc.test.", RecordType::A)).answers.len(), 1);
    assert_eq!(tcp(v6, &[query("www.svc.test.", RecordType::A)])[0].answers.len(), 1);
    assert_eq!(udp(s.dns, &query("www.svc.test.", RecordType::A)).answers.len(), 1);
}

#[test]
fn config_file_sets_listeners_and_zones() {
    let dir = TempDir::new("cfg");
    dir.write("z/svc.test.zone", ZONE);
    let cfg = dir.write("gslbd.toml", "[dns]\nlisten = [\"127.0.0.1:0\"]\n[zones]\ndirectory = \"z\"\n");
    let s = Server::start(&["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert!(s.ready_line.starts_with("ready dns=127.0.0.1:"), "{}", s.ready_line);
    assert!(s.ready_line.contains("/tcp admin=127.0.0.1:"), "{}", s.ready_line);
    assert_eq!(udp(s.dns, &query("www.svc.test.", RecordType::A)).answers.len(), 1);
}

#[test]
fn admin_api_off_loopback_without_a_token_is_refused_at_start() {
    let dir = TempDir::new("adminopen");
    dir.write("z/svc.test.zone", ZONE);
    let cfg = dir.write("gslbd.toml", "[zones]\ndirectory = \"z\"\n[admin]\nlisten = \"0.0.0.0:0\"\n");
    let Err((code, log)) = Server::try_start(&["--config", cfg.to_str().unwrap(), "--admin-listen", "0.0.0.0:0"])
    else {
        panic!("started an unprotected admin API")
    };
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("admin API on 0.0.0.0:0 (not loopback) without a token"), "{log}");
}

#[test]
fn sigterm_answers_tcp_queries_already_sent() {
    let dir = TempDir::new("termflight");
    dir.write("svc.test.zone", ZONE);
    for _ in 0..5 {
        let mut s = Server::start(&["--zones", dir.path().to_str().unwrap()]);
        let mut conn = std::net::TcpStream::connect(s.dns).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        // Three pipelined queries written, then SIGTERM at once: all three are answered.
        let mut bytes = Vec::new();
        for _ in 0..3 {
            let q = hickory_proto::serialize::binary::BinEncodable::to_bytes(&query("www.svc.test.", RecordType::A))
                .unwrap();
            bytes.extend_from_slice(&(q.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&q);
        }
        std::io::Write::write_all(&mut conn, &bytes).unwrap();
        s.signal("TERM");
        for i in 0..3 {
            let raw = tcp_read(&mut conn).unwrap_or_else(|| panic!("answer {i} lost at shutdown"));
            let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
            assert_eq!(m.answers.len(), 1);
        }
        assert_eq!(s.wait_exit(), Some(0));
    }
}
