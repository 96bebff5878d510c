//! Writing responses: header, question echo, the three sections with name compression, the
//! OPT record, and truncation.

use smallvec::SmallVec;

use super::{Edns, ErrorReply, HEADER_LEN, MIN_UDP_PAYLOAD, Query};
use crate::answer::{Answer, Owner, PlacedRRset};
use crate::rtype;

/// Octets the OPT record takes without options: root name, type, class, TTL, RDLENGTH.
const OPT_FIXED_LEN: usize = 11;
/// An ECS option with a full IPv6 address: code, length, family, prefixes, 16 octets.
const ECS_MAX_LEN: usize = 4 + 4 + 16;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;

/// The largest response for this query: 64 KiB over TCP; over UDP the requester's EDNS
/// payload size (at least 512) capped at ours, or 512 without EDNS.
pub fn size_limit(edns: Option<&Edns>, is_tcp: bool, our_payload: u16) -> usize {
    if is_tcp {
        return u16::MAX as usize;
    }
    match edns {
        Some(e) => e.udp_payload.clamp(MIN_UDP_PAYLOAD, our_payload.max(MIN_UDP_PAYLOAD)) as usize,
        None => MIN_UDP_PAYLOAD as usize,
    }
}

/// Remembers where names were written, so later names can point at them (RFC 1035 4.1.4).
/// Inline for ordinary answers, on the heap past 48 suffixes: a large answer (many regions'
/// CNAMEs, a big referral) stays compressed rather than growing and truncating early.
struct Compressor<'a> {
    /// (offset in the packet, the name suffix written there).
    entries: SmallVec<[(u16, &'a [u8]); 48]>,
}

impl<'a> Compressor<'a> {
    fn new() -> Self {
        Compressor { entries: SmallVec::new() }
    }

    fn find(&self, suffix: &[u8]) -> Option<u16> {
        self.entries.iter().find(|(_, s)| s.eq_ignore_ascii_case(suffix)).map(|&(off, _)| off)
    }

    fn add(&mut self, offset: usize, suffix: &'a [u8]) {
        // A pointer has 14 bits of offset (RFC 1035 section 4.1.4).
        if offset < 0x4000 {
            self.entries.push((offset as u16, suffix));
        }
    }

    /// Writes `name` (valid uncompressed wire form), pointing at an earlier copy of its
    /// longest known suffix.
    fn write_name(&mut self, out: &mut Vec<u8>, name: &'a [u8]) {
        let mut i = 0;
        while let Some(&len) = name.get(i) {
            if len == 0 {
                break;
            }
            let suffix = &name[i..];
            if let Some(off) = self.find(suffix) {
                out.extend_from_slice(&(0xC000 | off).to_be_bytes());
                return;
            }
            self.add(out.len(), suffix);
            out.extend_from_slice(name.get(i..i + 1 + len as usize).unwrap_or(&[]));
            i += 1 + len as usize;
        }
        out.push(0);
    }
}

/// Length of the uncompressed wire name at the start of `b` (valid rdata from a zone).
fn name_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&len) = b.get(i) {
        i += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    i.min(b.len())
}

fn write_rdata<'a>(out: &mut Vec<u8>, c: &mut Compressor<'a>, rtype: u16, rd: &'a [u8]) {
    match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR => c.write_name(out, rd),
        rtype::MX if rd.len() > 2 => {
            out.extend_from_slice(&rd[..2]);
            c.write_name(out, &rd[2..]);
        }
        rtype::SOA => {
            let m = name_len(rd);
            c.write_name(out, &rd[..m]);
            let r = m + name_len(&rd[m..]);
            c.write_name(out, &rd[m..r]);
            out.extend_from_slice(&rd[r..]);
        }
        _ => out.extend_from_slice(rd),
    }
}

/// Writes one RRset; returns false (with `out` unchanged) when it does not fit in `limit`.
fn write_rr<'a>(out: &mut Vec<u8>, c: &mut Compressor<'a>, rr: &PlacedRRset<'a>, limit: usize) -> bool {
    let start = out.len();
    let saved = c.entries.len();
    let ttl = rr.ttl_override.unwrap_or(rr.rrset.ttl).to_be_bytes();
    for rd in rr.rrset.rdatas() {
        match rr.owner {
            Owner::Question => out.extend_from_slice(&[0xC0, HEADER_LEN as u8]),
            Owner::Name(name) => c.write_name(out, name),
        }
        out.extend_from_slice(&rr.rrset.rtype.to_be_bytes());
        out.extend_from_slice(&rtype::CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl);
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        if rtype::has_compressible_rdata(rr.rrset.rtype) {
            write_rdata(out, c, rr.rrset.rtype, rd);
        } else {
            out.extend_from_slice(rd);
        }
        let rdlen = (out.len() - len_at - 2) as u16;
        out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        if out.len() > limit {
            out.truncate(start);
            c.entries.truncate(saved);
            return false;
        }
    }
    true
}

fn write_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

fn set_count(out: &mut [u8], index: usize, n: u16) {
    let at = 4 + index * 2;
    out[at..at + 2].copy_from_slice(&n.to_be_bytes());
}

/// Appends our OPT record (RFC 6891): our payload size, the extended rcode bits, DO copied
/// (RFC 3225 section 3), and the Client Subnet option echoed with `ecs_scope`.
fn write_opt(out: &mut Vec<u8>, edns: &Edns, our_payload: u16, rcode: u16, ecs_scope: u8) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&our_payload.to_be_bytes());
    out.push((rcode >> 4) as u8);
    out.push(0);
    out.extend_from_slice(&(if edns.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    match &edns.client_subnet {
        Some(cs) => {
            let addr_len = (cs.source_prefix as usize).div_ceil(8);
            out.extend_from_slice(&((4 + 4 + addr_len) as u16).to_be_bytes());
            out.extend_from_slice(&super::OPTION_CLIENT_SUBNET.to_be_bytes());
            out.extend_from_slice(&((4 + addr_len) as u16).to_be_bytes());
            out.extend_from_slice(&cs.family().to_be_bytes());
            out.push(cs.source_prefix);
            out.push(ecs_scope);
            match cs.addr {
                std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..addr_len.min(4)]),
                std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..addr_len.min(16)]),
            }
        }
        None => out.extend_from_slice(&[0, 0]),
    }
}

/// Encodes the response to `query` into `out` (cleared first), at most `limit` octets. When
/// the answer or authority section does not fit, the response is cut to the question and OPT
/// with TC set (RFC 2181 section 9); additional records that do not fit are left out, unless
/// the answer says they are required glue.
pub fn encode_answer<'a>(query: &'a Query<'a>, answer: &Answer<'a>, limit: usize, our_payload: u16, out: &mut Vec<u8>) {
    let rc = answer.rcode;
    let mut flags = FLAG_QR | ((query.opcode as u16) << 11) | (rc & 0xF);
    if answer.aa {
        flags |= FLAG_AA;
    }
    if query.rd {
        flags |= FLAG_RD;
    }
    write_header(out, query.id, flags, [1, 0, 0, 0]);
    out.extend_from_slice(query.question);
    let question_end = out.len();
    let reserve = if query.edns.is_some() { OPT_FIXED_LEN + ECS_MAX_LEN } else { 0 };
    let body_limit = limit.saturating_sub(reserve);
    let mut c = Compressor::new();
    c.add(HEADER_LEN, query.qname);

    let mut truncated = false;
    let mut counts = [0u16; 3];
    'sections: for (i, section) in [&answer.answer[..], &answer.authority[..]].into_iter().enumerate() {
        for rr in section {
            if !write_rr(out, &mut c, rr, body_limit) {
                truncated = true;
                break 'sections;
            }
            counts[i] += rr.rrset.len() as u16;
        }
    }
    if !truncated {
        for rr in &answer.additional {
            if !write_rr(out, &mut c, rr, body_limit) {
                truncated = answer.glue_required;
                break;
            }
            counts[2] += rr.rrset.len() as u16;
        }
    }
    if truncated {
        out.truncate(question_end);
        counts = [0; 3];
        flags |= FLAG_TC;
        out[2..4].copy_from_slice(&flags.to_be_bytes());
    }
    for (i, n) in counts.into_iter().enumerate() {
        set_count(out, i + 1, n);
    }
    if let Some(edns) = &query.edns {
        write_opt(out, edns, our_payload, rc, answer.ecs_scope);
        set_count(out, 3, counts[2] + 1);
    }
}

/// Encodes an error response: header copied, the question if it was read, OPT if the
/// requester used EDNS. The Client Subnet option is echoed with scope 0 on FORMERR only when
/// it was valid.
pub fn encode_error(reply: &ErrorReply<'_>, our_payload: u16, out: &mut Vec<u8>) {
    let mut flags = FLAG_QR | ((reply.opcode as u16) << 11) | (reply.rcode & 0xF);
    if reply.rd {
        flags |= FLAG_RD;
    }
    let qd = u16::from(reply.question.is_some());
    let ar = u16::from(reply.edns.is_some());
    write_header(out, reply.id, flags, [qd, 0, 0, ar]);
    if let Some(q) = reply.question {
        out.extend_from_slice(q);
    }
    if let Some(edns) = &reply.edns {
        write_opt(out, edns, our_payload, reply.rcode, 0);
    }
}

/// Target size of one zone-transfer message: well under the 64 KiB TCP limit.
const TRANSFER_MESSAGE_LEN: usize = 16 * 1024;

/// A zone transfer's records (which ones and in which order is answer logic:
/// `resolve::transfer`) as a list of messages of about 16 KiB. The question goes in the
/// first message only.
pub fn encode_transfer(query: &Query<'_>, rrs: &[PlacedRRset<'_>]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut rest = rrs;
    while !rest.is_empty() {
        let first = messages.is_empty();
        let mut out = Vec::with_capacity(TRANSFER_MESSAGE_LEN + 1024);
        write_header(&mut out, query.id, FLAG_QR | FLAG_AA, [u16::from(first), 0, 0, 0]);
        if first {
            out.extend_from_slice(query.question);
        }
        let mut c = Compressor::new();
        let mut n = 0u16;
        let mut taken = 0;
        for rr in rest {
            if out.len() >= TRANSFER_MESSAGE_LEN && taken > 0 {
                break;
            }
            if !write_rr(&mut out, &mut c, rr, u16::MAX as usize) {
                break;
            }
            n += rr.rrset.len() as u16;
            taken += 1;
        }
        if taken == 0 {
            // One RRset larger than a message cannot be sent; stop rather than loop.
            break;
        }
        set_count(&mut out, 1, n);
        messages.push(out);
        rest = &rest[taken..];
    }
    messages
}
