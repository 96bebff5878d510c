//! Robustness of the real binary against hostile or broken clients: random and mutated
//! packets over UDP and TCP (property tests, one server per property), idle and stalled TCP
//! connections (closed after `tcp_idle_timeout`), and the TCP connection cap. After every
//! mutated packet the server must still answer a normal query correctly.
//!
//! Every wait is bounded; servers listen on port 0 and are killed on drop (tests/common).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use gslbd::wire::{self, Decoded};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// What `host.pub.test. A` answers (tests/zones/pub.test.zone).
const HOST_A: [&str; 2] = ["host.pub.test. 120 A 203.0.113.20", "host.pub.test. 120 A 203.0.113.21"];
/// Our EDNS payload size (the config default): no UDP answer is larger.
const OUR_PAYLOAD: u16 = 1232;

fn server() -> Server {
    Server::start(&["--zones", test_zones().to_str().unwrap()])
}

/// A server with these extra `[dns]` settings.
fn server_with(dir: &TempDir, dns: &str) -> Server {
    let cfg =
        dir.write("gslbd.toml", &format!("[dns]\n{dns}\n[zones]\ndirectory = {:?}\n", test_zones().to_str().unwrap()));
    Server::start(&["--config", cfg.to_str().unwrap()])
}

/// Property test cases: `PROPTEST_CASES` when set, else `default`.
fn runner(default: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    TestRunner::new(Config {
        cases,
        // The runner is driven by hand (one server for all cases), so there is no source
        // file to persist failures next to; the failing input is in the panic message.
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Raw packet building: the mutations need malformed messages no DNS library would write.

const A: u16 = 1;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const OPT: u16 = 41;
const AXFR: u16 = 252;
const ANY: u16 = 255;

fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Header (RD set, one question, `arcount` additional records) + the question.
fn header_and_question(id: u16, qname: &[u8], qtype: u16, arcount: u16) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [id, 0x0100, 1, 0, 0, arcount] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p.extend_from_slice(qname);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

/// An OPT record with the root owner: the payload size, TTL (extended rcode, version, DO) and
/// options as given, RDLENGTH the options' length.
fn opt_rr(payload: u16, ttl: u32, options: &[u8]) -> Vec<u8> {
    let mut r = vec![0];
    r.extend_from_slice(&OPT.to_be_bytes());
    r.extend_from_slice(&payload.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(options.len() as u16).to_be_bytes());
    r.extend_from_slice(options);
    r
}

/// An EDNS Client Subnet option, well-formed or not: the option length is what follows.
fn ecs_option(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&wire::OPTION_CLIENT_SUBNET.to_be_bytes());
    o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
    o.extend_from_slice(&family.to_be_bytes());
    o.push(source);
    o.push(scope);
    o.extend_from_slice(addr);
    o
}

fn query_raw(id: u16, qname: &str, qtype: u16, opt: Option<Vec<u8>>) -> Vec<u8> {
    let mut p = header_and_question(id, &name(qname), qtype, u16::from(opt.is_some()));
    if let Some(o) = opt {
        p.extend_from_slice(&o);
    }
    p
}

/// Valid queries the mutations start from: every kind of answer the test zones give.
fn base_queries() -> Vec<Vec<u8>> {
    let ecs4 = ecs_option(1, 24, 0, &[81, 2, 69]);
    let ecs6 = ecs_option(2, 56, 0, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0]);
    vec![
        query_raw(0x1001, "host.pub.test.", A, None),
        query_raw(0x1002, "host.pub.test.", A, Some(opt_rr(1232, 0, &ecs4))),
        query_raw(0x1003, "wide.pub.test.", AAAA, None),
        query_raw(0x1004, "huge.pub.test.", TXT, Some(opt_rr(4096, 0x8000, &[]))),
        query_raw(0x1005, "www.partner.pub.test.", A, None),
        query_raw(0x1006, "pub.test.", ANY, Some(opt_rr(512, 0, &[]))),
        query_raw(0x1007, "pub.test.", AXFR, None),
        query_raw(0x1008, "X.star.pub.test.", AAAA, Some(opt_rr(1232, 0, &ecs6))),
        query_raw(0x1009, "hop1.pub.test.", A, None),
    ]
}

fn base() -> impl Strategy<Value = Vec<u8>> {
    select(base_queries())
}

/// Names to put in mutated questions.
fn qnames() -> impl Strategy<Value = Vec<u8>> {
    select(vec![name("host.pub.test."), name("pub.test."), name("a.b.kids.pub.test."), name(".")])
}

/// Random bytes and mutations of valid queries: bit flips, truncations, random counts, bad
/// label lengths, compression pointers, odd EDNS (huge or tiny payload sizes, versions,
/// garbage options, two OPT records), malformed Client Subnet options, trailing garbage.
fn packets() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Random bytes (half of them have QR set or are runts: dropped without a word).
        2 => vec(any::<u8>(), 0..600),
        // A random header in front of a valid question.
        1 => (any::<[u8; 12]>(), qnames(), any::<u16>()).prop_map(|(h, n, t)| {
            let mut p = h.to_vec();
            p.extend_from_slice(&n);
            p.extend_from_slice(&t.to_be_bytes());
            p.extend_from_slice(&1u16.to_be_bytes());
            p
        }),
        // Bit flips.
        3 => (base(), vec((any::<Index>(), 0u8..8), 1..8)).prop_map(|(mut p, flips)| {
            for (i, bit) in flips {
                let i = i.index(p.len());
                p[i] ^= 1 << bit;
            }
            p
        }),
        // Truncation anywhere.
        2 => (base(), any::<Index>()).prop_map(|(p, i)| p[..i.index(p.len())].to_vec()),
        // Random section counts.
        2 => (base(), 0usize..4, any::<u16>()).prop_map(|(mut p, which, n)| {
            p[4 + 2 * which..6 + 2 * which].copy_from_slice(&n.to_be_bytes());
            p
        }),
        // A bad label length somewhere in the question name.
        2 => (base(), any::<Index>(), any::<u8>()).prop_map(|(mut p, at, len)| {
            let name_len = p[12..].iter().position(|&b| b == 0).unwrap_or(0) + 1;
            p[12 + at.index(name_len)] = len;
            p
        }),
        // Names too long: labels of 63 octets.
        1 => (3usize..6, any::<u16>()).prop_map(|(labels, t)| {
            let mut n = Vec::new();
            for _ in 0..labels {
                n.push(63);
                n.extend_from_slice(&[b'x'; 63]);
            }
            n.push(0);
            header_and_question(0x2001, &n, t, 0)
        }),
        // Compression pointers in the question (a question name may not be compressed): to
        // itself, to the header, past the end, after labels.
        2 => (vec(select(vec!["a", "pub", "test"]), 0..3), 0u16..0x4000).prop_map(
            |(labels, target)| {
                let mut n = Vec::new();
                for l in labels {
                    n.push(l.len() as u8);
                    n.extend_from_slice(l.as_bytes());
                }
                n.extend_from_slice(&(0xC000 | target).to_be_bytes());
                header_and_question(0x2002, &n, A, 0)
            }
        ),
        // Compression pointers (loops included) as the owner of an additional record.
        1 => (base(), 0u16..0x4000, any::<u16>()).prop_map(|(mut p, target, rtype)| {
            p[10..12].copy_from_slice(&1u16.to_be_bytes());
            p.truncate(12 + p[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5);
            p.extend_from_slice(&(0xC000 | target).to_be_bytes());
            p.extend_from_slice(&rtype.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            p
        }),
        // Odd EDNS: any payload size (0, 65535, ...), version, flags, garbage options, an
        // RDLENGTH that lies, a second OPT record.
        3 => (
            select(vec!["host.pub.test.", "huge.pub.test.", "wide.pub.test."]),
            prop_oneof![Just(0u16), Just(1), Just(511), Just(65535), any::<u16>()],
            any::<u32>(),
            vec(any::<u8>(), 0..48),
            -3i8..3,
            any::<bool>(),
        )
            .prop_map(|(qname, payload, ttl, options, lie, twice)| {
                let qtype = if qname.starts_with("huge") { TXT } else { AAAA };
                let mut opt = opt_rr(payload, ttl, &options);
                let rdlen = (options.len() as i32 + i32::from(lie)).max(0) as u16;
                let at = opt.len() - options.len() - 2;
                opt[at..at + 2].copy_from_slice(&rdlen.to_be_bytes());
                let mut p = query_raw(0x2003, qname, qtype, Some(opt.clone()));
                if twice {
                    p[10..12].copy_from_slice(&2u16.to_be_bytes());
                    p.extend_from_slice(&opt);
                }
                p
            }),
        // Malformed Client Subnet: any family, prefix lengths, address length and bits.
        3 => (
            prop_oneof![Just(1u16), Just(2), any::<u16>()],
            any::<u8>(),
            any::<u8>(),
            vec(any::<u8>(), 0..20),
            any::<bool>(),
        )
            .prop_map(|(family, source, scope, addr, twice)| {
                let mut options = ecs_option(family, source, scope, &addr);
                if twice {
                    options.extend_from_slice(&ecs_option(1, 0, 0, &[]));
                }
                query_raw(0x2004, "host.pub.test.", A, Some(opt_rr(1232, 0, &options)))
            }),
        // Trailing garbage after a valid query.
        1 => (base(), vec(any::<u8>(), 1..64)).prop_map(|(mut p, tail)| {
            p.extend_from_slice(&tail);
            p
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Whether the server must answer `packet`: a full header and QR clear (runts and responses
/// are dropped: answering responses makes loops).
fn must_answer(packet: &[u8]) -> bool {
    packet.len() >= wire::HEADER_LEN && packet[2] & 0x80 == 0
}

/// Checks one response to `packet`: QR set, ID copied, within `limit`, and it parses.
fn check_response(packet: &[u8], resp: &[u8], limit: usize) -> Result<(), TestCaseError> {
    prop_assert!(resp.len() >= wire::HEADER_LEN, "response shorter than a header: {resp:02x?}");
    prop_assert!(resp[2] & 0x80 != 0, "QR clear in {resp:02x?}");
    prop_assert_eq!(&resp[..2], &packet[..2], "ID not copied");
    prop_assert!(resp.len() <= limit, "response of {} octets over the limit {limit}", resp.len());
    if let Err(e) = Message::from_vec(resp) {
        return Err(TestCaseError::fail(format!("response does not parse ({e}): {resp:02x?}")));
    }
    Ok(())
}

/// The largest UDP answer `packet` may get: 512, or its EDNS payload size up to ours.
fn udp_limit(packet: &[u8]) -> usize {
    let edns = match wire::decode(packet) {
        Decoded::Query(q) => q.edns,
        Decoded::Error(e) => e.edns,
        Decoded::Drop => None,
    };
    wire::size_limit(edns.as_ref(), false, OUR_PAYLOAD)
}

fn is_host_a_answer(raw: &[u8]) -> Result<(), String> {
    let m = Message::from_vec(raw).map_err(|e| format!("probe answer does not parse: {e}"))?;
    let got = lines(&m.answers);
    if got != HOST_A {
        return Err(format!("probe answer {got:?}, expected {HOST_A:?}"));
    }
    Ok(())
}

/// Sends `packet`, then a normal query from the same socket. Datagrams from one socket reach
/// the same worker (SO_REUSEPORT hashes the address pair) and are answered in order, so
/// whatever arrives before the probe's answer is the answer to `packet`; and the probe's
/// answer proves the server survived `packet` and still answers correctly.
fn udp_case(server: SocketAddr, packet: &[u8]) -> Result<(), TestCaseError> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let probe_id = match packet {
        [a, b, ..] => u16::from_be_bytes([*a, *b]).wrapping_add(1),
        _ => 0x4242,
    };
    let probe = query_raw(probe_id, "host.pub.test.", A, None);
    sock.send_to(packet, server).unwrap();
    sock.send_to(&probe, server).unwrap();
    let mut buf = [0u8; 65535];
    let mut answers = Vec::new();
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "no answer to a normal query sent after the packet ({e}): server dead or stuck"
                )));
            }
        };
        let d = &buf[..n];
        if d.len() >= 2 && d[..2] == probe_id.to_be_bytes() {
            is_host_a_answer(d).map_err(TestCaseError::fail)?;
            break;
        }
        prop_assert!(answers.is_empty(), "two answers to one packet; the second: {d:02x?}");
        answers.push(d.to_vec());
    }
    prop_assert_eq!(answers.len(), usize::from(must_answer(packet)), "answers to a packet of {} octets", packet.len());
    for a in &answers {
        check_response(packet, a, udp_limit(packet))?;
    }
    Ok(())
}

/// Sends a normal query over UDP and checks the answer (3 tries: one lost datagram on a busy
/// machine is not what these tests are about).
fn assert_udp_healthy(s: &Server) {
    let mut last = String::new();
    for _ in 0..3 {
        let q = query_raw(rand_id(), "host.pub.test.", A, None);
        match udp_raw(s.dns, &q, Duration::from_secs(3)) {
            Some(r) => match is_host_a_answer(&r) {
                Ok(()) => return,
                Err(e) => panic!("{e}"),
            },
            None => last = "no UDP answer".into(),
        }
    }
    panic!("{last}");
}

fn assert_tcp_healthy(s: &Server) {
    let r = &tcp(s.dns, &[query("host.pub.test.", RecordType::A)])[0];
    assert_eq!(lines(&r.answers), HOST_A);
}

// ---------------------------------------------------------------------------------------------
// Property tests

#[test]
fn random_and_mutated_udp_packets_get_sane_answers_or_none() {
    let s = server();
    let mut runner = runner(300);
    let result = runner.run(&packets(), |packet| udp_case(s.dns, &packet));
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_udp_healthy(&s);
    assert_tcp_healthy(&s);
}

/// The DNS messages a TCP server reads from `stream` (RFC 7766 framing): the IDs of those it
/// must answer, in order. A frame cut short by the end of the stream is not a message.
fn expected_tcp_answers(stream: &[u8]) -> Vec<[u8; 2]> {
    let mut ids = Vec::new();
    let mut rest = stream;
    while let [hi, lo, body @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((msg, after)) = body.split_at_checked(len) else {
            break;
        };
        if must_answer(msg) {
            ids.push([msg[0], msg[1]]);
        }
        rest = after;
    }
    ids
}

/// Streams: well-framed mutated packets, optionally ending in a cut-off frame (a length prefix
/// promising more than follows, or a lone octet), or random bytes read as framing.
fn streams() -> impl Strategy<Value = Vec<u8>> {
    let framed = (
        vec(packets(), 1..6),
        prop_oneof![
            Just(Vec::new()),
            (1u16..2000, vec(any::<u8>(), 0..40)).prop_map(|(len, body)| {
                let mut t = len.max(body.len() as u16 + 1).to_be_bytes().to_vec();
                t.extend_from_slice(&body);
                t
            }),
            any::<u8>().prop_map(|b| vec![b]),
        ],
    )
        .prop_map(|(msgs, tail)| {
            let mut s = Vec::new();
            for m in msgs {
                s.extend_from_slice(&(m.len() as u16).to_be_bytes());
                s.extend_from_slice(&m);
            }
            s.extend_from_slice(&tail);
            s
        });
    prop_oneof![3 => framed, 1 => vec(any::<u8>(), 0..400)]
}

/// Writes `stream`, half-closes, and reads answers until the server closes: it must answer
/// exactly the complete messages that are queries, in order, and then close (the stream
/// ended), all within the read timeout.
fn tcp_case(server: SocketAddr, stream: &[u8]) -> Result<(), TestCaseError> {
    let mut s = TcpStream::connect_timeout(&server, WAIT).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    if let Err(e) = s.write_all(stream) {
        return Err(TestCaseError::fail(format!("write failed: {e}")));
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    if let Err(e) = s.read_to_end(&mut got) {
        return Err(TestCaseError::fail(format!("server neither answered nor closed ({e}); read so far: {got:02x?}")));
    }
    let expected = expected_tcp_answers(stream);
    let mut answers = Vec::new();
    let mut rest = &got[..];
    while let [hi, lo, body @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((msg, after)) = body.split_at_checked(len) else {
            return Err(TestCaseError::fail(format!("answer frame cut short: {rest:02x?}")));
        };
        answers.push(msg);
        rest = after;
    }
    prop_assert!(rest.is_empty(), "stray octet after the answers");
    prop_assert_eq!(answers.len(), expected.len(), "number of answers");
    for (a, id) in answers.iter().zip(&expected) {
        // The ID is what ties an answer to its query here (check_response wants the query).
        check_response(id, a, u16::MAX as usize)?;
        prop_assert!(a[2] & 0x02 == 0, "TC set over TCP");
    }
    Ok(())
}

#[test]
fn random_and_mutated_tcp_streams_get_sane_answers_and_a_close() {
    let s = server();
    let mut runner = runner(60);
    let result = runner.run(&streams(), |stream| {
        tcp_case(s.dns, &stream)?;
        // A new connection still gets a correct answer.
        let mut c = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = query_raw(0x7777, "host.pub.test.", A, None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        c.write_all(&framed).unwrap();
        match tcp_read(&mut c) {
            Some(r) => is_host_a_answer(&r).map_err(TestCaseError::fail),
            None => Err(TestCaseError::fail("no TCP answer after the stream")),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_tcp_healthy(&s);
    assert_udp_healthy(&s);
}

// ---------------------------------------------------------------------------------------------
// Idle, stalled and slow TCP clients

/// Reads until the server closes the connection; returns how long that took. Panics if it
/// sends anything or has not closed within `within`.
fn wait_for_close(c: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    match c.read(&mut buf) {
        Ok(0) => {}
        // A reset is a close too (e.g. if it arrives while we still write).
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("expected a close, got {n} octets: {:02x?}", &buf[..n]),
        Err(e) => panic!("connection still open after {:?} ({e})", start.elapsed()),
    }
    start.elapsed()
}

fn assert_closed_after_idle_timeout(elapsed: Duration, what: &str) {
    // tcp_idle_timeout = 1s. The server's timer starts after its accept (after our
    // connect returned), so the close cannot come sooner; 4s allows for a loaded machine.
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed <= Duration::from_secs(4),
        "{what}: closed after {elapsed:?}, expected about 1s"
    );
}

#[test]
fn idle_and_stalled_tcp_clients_are_disconnected_after_the_idle_timeout() {
    let dir = TempDir::new("idle");
    let s = server_with(&dir, "tcp_idle_timeout = \"1s\"");

    // Every timer the server starts for these begins after this instant.
    let start = Instant::now();
    // Connects and sends nothing.
    let mut silent = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    // Sends a length prefix, then nothing.
    let mut stalled = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    stalled.write_all(&[0, 40]).unwrap();
    // Sends half a length prefix.
    let mut half = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    half.write_all(&[0]).unwrap();
    // Sends a prefix and part of the message.
    let q = query_raw(0x3003, "host.pub.test.", A, None);
    let mut partial = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    partial.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    partial.write_all(&q[..10]).unwrap();

    // Each must be closed about 1s after it went quiet.
    for (c, what) in [
        (&mut silent, "silent client"),
        (&mut stalled, "client stalled after the length prefix"),
        (&mut half, "client stalled inside the length prefix"),
        (&mut partial, "client stalled inside the message"),
    ] {
        wait_for_close(c, Duration::from_secs(6));
        assert_closed_after_idle_timeout(start.elapsed(), what);
    }
    assert_tcp_healthy(&s);
}

#[test]
fn tcp_client_idle_after_an_answer_is_disconnected_and_a_trickle_does_not_keep_it_open() {
    let dir = TempDir::new("idle2");
    let s = server_with(&dir, "tcp_idle_timeout = \"1s\"");

    // One query answered, then silence: the idle timer restarts after the answer.
    let mut c = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let q = query_raw(0x3004, "host.pub.test.", A, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    c.write_all(&framed).unwrap();
    is_host_a_answer(&tcp_read(&mut c).expect("answer")).unwrap();
    let elapsed = wait_for_close(&mut c, Duration::from_secs(6));
    assert_closed_after_idle_timeout(elapsed, "client idle after an answer");

    // Slowloris: a message sent one octet every 300 ms (10 s in all) is cut off about 1s
    // after its length prefix, not held open while octets keep coming.
    let mut slow = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let start = Instant::now();
    let mut closed = false;
    for &b in &framed {
        if slow.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => panic!("answer to a message that never completed: {:02x?}", &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(closed, "trickling client still connected after {elapsed:?}");
    // Prefix (two octets) then at most 1s of body: ~1.3-1.6s; 4s allows for load.
    assert!(elapsed <= Duration::from_secs(4), "trickling client closed only after {elapsed:?}");
    assert_tcp_healthy(&s);
}

// ---------------------------------------------------------------------------------------------
// Connection cap

/// Sends a normal query on `c` and expects the answer.
fn ask_on(c: &mut TcpStream, id: u16) -> Result<(), String> {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query_raw(id, "host.pub.test.", A, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    c.write_all(&framed).map_err(|e| format!("write: {e}"))?;
    let r = tcp_read(c).ok_or("closed without an answer")?;
    if r[..2] != id.to_be_bytes() {
        return Err(format!("answer with the wrong ID: {r:02x?}"));
    }
    is_host_a_answer(&r)
}

#[test]
fn connections_over_the_cap_are_closed_at_once_and_served_again_after_one_closes() {
    let dir = TempDir::new("cap");
    // A long idle timeout, so the connections holding the cap stay open throughout.
    let s = server_with(&dir, "tcp_max_connections = 2\ntcp_idle_timeout = \"30s\"");

    // Two connections, each answered once: both hold a permit now.
    let mut c1 = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    ask_on(&mut c1, 0x4001).unwrap();
    let mut c2 = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    ask_on(&mut c2, 0x4002).unwrap();

    // A third is accepted by the kernel, then closed by the server without waiting.
    let mut c3 = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
    let elapsed = wait_for_close(&mut c3, Duration::from_secs(5));
    assert!(elapsed < Duration::from_secs(2), "connection over the cap closed only after {elapsed:?}");

    // The first two are still served.
    ask_on(&mut c1, 0x4003).unwrap();
    ask_on(&mut c2, 0x4004).unwrap();

    // Closing one frees its place (once the server has seen the close: retry briefly).
    drop(c1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut c4 = TcpStream::connect_timeout(&s.dns, WAIT).unwrap();
        match ask_on(&mut c4, 0x4005) {
            Ok(()) => {
                // ... and c2 still works beside it.
                ask_on(&mut c2, 0x4006).unwrap();
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no connection served after closing one ({attempts} tries): {e}"),
        }
    }
}
