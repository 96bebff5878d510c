//! Sockets: UDP worker threads and the TCP server. No answer logic lives here: both
//! transports hand each message to [`respond`].

pub mod rrl;
pub mod tcp;
pub mod udp;

use std::net::{IpAddr, SocketAddr};

use crate::metrics::DnsShard;
use crate::resolve::{self, Transport};
use crate::rtype;
use crate::state::Snapshot;
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
/// (`rrl`); TCP passes None: TCP answers are never limited.
pub fn respond(
    packet: &[u8],
    client: IpAddr,
    transport: Transport,
    snap: &Snapshot,
    out: &mut Vec<u8>,
    counters: &DnsShard,
    limiter: Option<&mut rrl::Limiter>,
) -> Reply {
    let payload = snap.settings.udp_payload;
    let query = match wire::decode(packet) {
        Decoded::Query(q) => q,
        Decoded::Error(reply) => {
            wire::encode_error(&reply, payload, out);
            return finish(limiter, client, reply.rcode, question_type(reply.question), transport, out, counters);
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
        wire::encode_error(&refuse, payload, out);
        return finish(limiter, client, refuse.rcode, query.qtype, transport, out, counters);
    }
    let answer = resolve::answer(&query, client, snap);
    let mut limit = wire::size_limit(query.edns.as_ref(), transport == Transport::Tcp, payload);
    if query.qtype == rtype::ANY && transport == Transport::Udp {
        // RFC 8482 already answers ANY with one RRset; this keeps a large one (a long TXT
        // set) from making ANY over UDP an amplifier: beyond the factor, TC and retry on TCP.
        limit = limit.min(packet.len() * ANY_UDP_FACTOR);
    }
    wire::encode_answer(&query, &answer, limit, payload, out);
    if finish(limiter, client, answer.rcode, query.qtype, transport, out, counters) == Reply::Drop {
        return Reply::Drop;
    }
    if let Some((i, chosen)) = &answer.service
        && let Some(service) = snap.gslb.services.get(*i)
    {
        service.count_answer(chosen, counters.index);
    }
    Reply::Message
}

/// Passes the response in `out` through the rate limiter, if any, and counts what is sent.
/// A dropped response is counted by the limiter only; a slipped one is sent (empty, TC=1)
/// and counted as a response too.
fn finish(
    limiter: Option<&mut rrl::Limiter>,
    client: IpAddr,
    rc: u16,
    qtype: u16,
    transport: Transport,
    out: &mut Vec<u8>,
    counters: &DnsShard,
) -> Reply {
    if let Some(limiter) = limiter {
        let is_error = matches!(rc, rcode::NXDOMAIN | rcode::REFUSED | rcode::FORMERR);
        match limiter.check(client, is_error) {
            rrl::Verdict::Send => {}
            rrl::Verdict::Slip => rrl::truncate(out),
            rrl::Verdict::Drop => return Reply::Drop,
        }
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

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) as plain IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A listening address as the ready line and logs show it.
pub fn describe(addr: SocketAddr, proto: &str) -> String {
    format!("{addr}/{proto}")
}
