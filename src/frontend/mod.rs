//! Sockets: UDP worker threads and the TCP server. No answer logic lives here: both
//! transports hand each message to [`respond`].

pub mod rrl;
pub mod tcp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};

use crate::addr::canonical;
use crate::answer::Transport;
use crate::dnssec::Signer;
use crate::metrics::DnsShard;
use crate::resolve;
use crate::rtype;
use crate::snapshot::Snapshot;
use crate::wire::{self, Decoded, ErrorReply, rcode};

/// An answer to ANY over UDP is at most this many times the size of the query (else it is
/// sent truncated, TC=1, with the question only). Ordinary ANY answers on the demo zone are
/// 1.4 to 2.4 times the query (docs/operations.md).
pub const ANY_UDP_FACTOR: usize = 4;

/// What to send back for one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `out` holds one response.
    Message,
    /// Nothing (a response, or a packet too short for a header).
    Drop,
    /// A permitted zone transfer (TCP only): the caller streams [`wire::encode_transfer`].
    Transfer,
}

/// Decodes one message, answers it from `snap` and encodes the response into `out`. A UDP
/// worker passes its rate limiter, which may drop the response or send it truncated
/// (`rrl`); TCP passes None: TCP answers are never limited. Answers are not signed: see
/// [`respond_signed`].
pub fn respond(
    packet: &[u8],
    client: IpAddr,
    transport: Transport,
    snap: &Snapshot,
    out: &mut Vec<u8>,
    counters: &DnsShard,
    limiter: Option<&mut rrl::Limiter>,
) -> Reply {
    respond_signed(packet, client, transport, snap, out, counters, limiter, None)
}

/// [`respond`], with the worker's DNSSEC [`Signer`]: answers to queries with DO=1 from a
/// zone with keys carry RRSIGs and compact denial. DO=0 queries never touch the signer.
#[allow(clippy::too_many_arguments)]
pub fn respond_signed(
    packet: &[u8],
    client: IpAddr,
    transport: Transport,
    snap: &Snapshot,
    out: &mut Vec<u8>,
    counters: &DnsShard,
    limiter: Option<&mut rrl::Limiter>,
    signer: Option<&mut Signer>,
) -> Reply {
    let payload = snap.settings.udp_payload;
    let query = match wire::decode(packet) {
        Decoded::Query(q) => q,
        Decoded::Error(reply) => {
            let verdict = decide(limiter, client, reply.rcode);
            if verdict == rrl::Verdict::Drop {
                return Reply::Drop;
            }
            wire::encode_error(&reply, payload, out);
            return sent(verdict, reply.rcode, question_type(reply.question), transport, out, counters);
        }
        Decoded::Drop => {
            counters.dropped();
            return Reply::Drop;
        }
    };
    if matches!(query.qtype, rtype::AXFR | rtype::IXFR) {
        let allowed = snap.settings.transfer_allow.iter().any(|net| net.contains(&canonical(client)));
        let zone_apex = snap.zones.get(query.qname_lower.as_wire()).is_some();
        if allowed && zone_apex && transport == Transport::Tcp {
            return Reply::Transfer;
        }
        let refuse = ErrorReply {
            id: query.id,
            opcode: query.opcode,
            rd: query.rd,
            rcode: if allowed && zone_apex { rcode::NOTIMP } else { rcode::REFUSED },
            question: Some(query.question),
            edns: query.edns,
        };
        let verdict = decide(limiter, client, refuse.rcode);
        if verdict == rrl::Verdict::Drop {
            return Reply::Drop;
        }
        wire::encode_error(&refuse, payload, out);
        return sent(verdict, refuse.rcode, query.qtype, transport, out, counters);
    }
    // Declared first: the signed answer borrows it, and it must outlive that.
    let signed;
    let answer = resolve::answer(&query, client, snap);
    // Decided before signing and encoding, on the unsigned answer: a dropped or slipped
    // answer costs no signature (nor the fresh-signature budget a flood would use up), and
    // an NXDOMAIN counts against the error limit before compact denial makes it NOERROR.
    let verdict = decide(limiter, client, answer.rcode);
    if verdict == rrl::Verdict::Drop {
        return Reply::Drop;
    }
    let answer = match signer {
        Some(signer)
            if verdict == rrl::Verdict::Send && query.edns.is_some_and(|e| e.dnssec_ok) && !snap.keys.is_empty() =>
        {
            let before = signer.stats;
            let result = resolve::dnssec::sign(&query, &answer, snap, signer);
            let after = signer.stats;
            counters.signatures(after.hits - before.hits, after.fresh - before.fresh, after.refused - before.refused);
            match result {
                Some(s) => {
                    signed = s;
                    signed.apply(answer)
                }
                None => answer,
            }
        }
        _ => answer,
    };
    let mut limit = wire::size_limit(query.edns.as_ref(), transport == Transport::Tcp, payload);
    if query.qtype == rtype::ANY && transport == Transport::Udp {
        // RFC 8482 already answers ANY with one RRset; this keeps a large one (a long TXT
        // set) from making ANY over UDP an amplifier: beyond the factor, TC and retry on TCP.
        limit = limit.min(packet.len() * ANY_UDP_FACTOR);
    }
    // A slipped answer is encoded with no room for records (header, question and OPT, TC=1).
    if verdict == rrl::Verdict::Slip {
        limit = 0;
    }
    wire::encode_answer(&query, &answer, limit, payload, out);
    sent(verdict, answer.rcode, query.qtype, transport, out, counters);
    if verdict == rrl::Verdict::Send
        && let Some((i, chosen)) = &answer.service
        && let Some(service) = snap.gslb.services.get(*i)
    {
        for r in chosen {
            if let Some(position) = service.regions.iter().position(|x| x == r) {
                snap.answer_counts.add(*i, position, counters.index);
            }
        }
    }
    Reply::Message
}

/// What the rate limiter, if any, says about a response with this rcode to `client`. The
/// limiter counts what it limits; a dropped response is not counted as a response.
fn decide(limiter: Option<&mut rrl::Limiter>, client: IpAddr, rc: u16) -> rrl::Verdict {
    match limiter {
        Some(limiter) => limiter.check(client, matches!(rc, rcode::NXDOMAIN | rcode::REFUSED | rcode::FORMERR)),
        None => rrl::Verdict::Send,
    }
}

/// Counts the response encoded in `out`, marking it truncated (TC=1) if it is a slip: then it
/// carries no records (an error response never does; an answer was encoded without room).
fn sent(
    verdict: rrl::Verdict,
    rc: u16,
    qtype: u16,
    transport: Transport,
    out: &mut [u8],
    counters: &DnsShard,
) -> Reply {
    if verdict == rrl::Verdict::Slip {
        rrl::mark_truncated(out);
    }
    counters.response(transport, rc, qtype);
    Reply::Message
}

/// QTYPE of a raw question (name, type, class), for metrics.
fn question_type(question: Option<&[u8]>) -> u16 {
    question
        .and_then(|q| q.len().checked_sub(4).and_then(|i| q.get(i..i + 2)))
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// A listening address as the ready line and logs show it.
pub fn describe(addr: SocketAddr, proto: &str) -> String {
    format!("{addr}/{proto}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::rrl::RrlConfig;

    /// A DNS query for `name` A with EDNS, DO=1.
    fn signed_query(name: &str) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in name.trim_end_matches('.').split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        p
    }

    /// A flood of DO=1 queries for random names from one prefix: only the answers the rate
    /// limiter sends are signed, so the dropped and slipped ones spend no signature and no
    /// fresh-signature budget (it once signed first and limited after).
    #[test]
    fn limited_answers_are_not_signed() {
        let dir = crate::testutil::TempDir::new("frontend-rrl-dnssec");
        let zone = "$ORIGIN sec.test.\n$TTL 60\n@ SOA ns1 h 1 1h 15m 1w 5m\n@ NS ns1\nns1 A 192.0.2.1\n";
        dir.write("zones/sec.test.zone", zone);
        dir.write("gslbd.toml", "[zones]\ndirectory = \"zones\"\n[dnssec]\nkey_directory = \"keys\"\n");
        let apex = crate::name::Name::parse("sec.test.", None).unwrap();
        crate::dnssec::keygen(&dir.path().join("keys"), &apex, crate::dnssec::ALG_ECDSAP256SHA256).unwrap();
        let source = crate::snapshot::Source { config: Some(dir.path().join("gslbd.toml")), ..Default::default() };
        let (_, snap) = crate::snapshot::load(&source).unwrap();
        let cfg = RrlConfig {
            responses_per_second: 5,
            errors_per_second: 5,
            window: Duration::from_secs(1),
            slip: 2,
            table_size: 1024,
            ..RrlConfig::default()
        };
        let epoch = Instant::now();
        let mut limiter = rrl::Limiter::new(Arc::new(cfg), 1, epoch, None);
        limiter.tick(epoch);
        let mut signer = Signer::new(u32::MAX, 1000);
        let (mut out, counters) = (Vec::new(), crate::metrics::dns_shard(0));
        let client: IpAddr = "192.0.2.77".parse().unwrap();
        let mut sent = 0;
        for i in 0..100 {
            let q = signed_query(&format!("r{i}.sec.test."));
            let reply = respond_signed(
                &q,
                client,
                Transport::Udp,
                &snap,
                &mut out,
                counters,
                Some(&mut limiter),
                Some(&mut signer),
            );
            // A sent answer is NOERROR with RRSIGs (compact denial); a slipped one is TC=1.
            if reply == Reply::Message && out[2] & 0x02 == 0 {
                sent += 1;
            }
        }
        assert_eq!(sent, 5, "one second's allowance of answers");
        // Each sent denial signs two RRsets: its NSEC (fresh: a new name each time) and the
        // SOA (fresh once, then from the cache). The 95 limited answers sign nothing.
        assert_eq!((signer.stats.fresh, signer.stats.hits), (6, 4), "{:?}", signer.stats);
    }
}
