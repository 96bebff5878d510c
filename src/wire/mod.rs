//! Bytes <-> messages: the only module that reads or writes DNS packets.
//!
//! Decoding is a hand-written, bounds-checked reader of what an authoritative server needs
//! from a query (header, one question, the OPT record and its Client Subnet option): it does
//! not build a general message object, so a query costs no allocation. It also holds the
//! gates: packets too short for a header and responses are dropped, other opcodes get
//! NOTIMP, anything malformed FORMERR, EDNS versions above 0 BADVERS. Encoding writes
//! [`Answer`](crate::answer::Answer)s with name compression and truncates (TC) when the answer does not fit.
//! Nothing here panics on any input: every index is checked.

mod encode;

use std::net::IpAddr;

pub use encode::{encode_answer, encode_error, encode_transfer, size_limit};

use crate::rtype;

/// Size of the DNS message header in bytes (RFC 1035 section 4.1.1); shorter packets are dropped.
pub const HEADER_LEN: usize = 12;
/// Largest UDP answer to a query without EDNS (RFC 1035 section 4.2.1).
pub const MIN_UDP_PAYLOAD: u16 = 512;

/// Response codes, extended ones included (RFC 6891 section 6.1.3).
pub use crate::answer::rcode;

/// EDNS option code of Client Subnet (RFC 7871).
pub const OPTION_CLIENT_SUBNET: u16 = 8;

/// A decoded query: what the resolver needs, borrowing the packet.
#[derive(Debug, Clone)]
pub struct Query<'p> {
    /// Message ID, copied into the response.
    pub id: u16,
    /// OPCODE (4 bits); only 0 (QUERY) reaches the resolver, others are answered NOTIMP.
    pub opcode: u8,
    /// Recursion Desired flag, copied into the response (RFC 1035 section 4.1.1).
    pub rd: bool,
    /// The question name as received (letter case kept), uncompressed wire form.
    pub qname: &'p [u8],
    /// The question name lowercased: the lookup key.
    pub qname_lower: NameBuf,
    /// QTYPE (see [`crate::rtype`]).
    pub qtype: u16,
    /// QCLASS; IN and ANY are answered, others REFUSED.
    pub qclass: u16,
    /// The raw question (name, type, class) to echo back unchanged (DNS 0x20).
    pub question: &'p [u8],
    /// The requester's OPT record; None for a query without EDNS.
    pub edns: Option<Edns>,
}

/// A wire name held inline, so decoding a query does not allocate.
#[derive(Clone)]
pub struct NameBuf {
    buf: [u8; 255],
    len: u8,
}

impl NameBuf {
    /// Lowercases an uncompressed wire name into the buffer; None when it is longer than 255
    /// bytes (RFC 1035 section 2.3.4). The labels are not checked: the caller has read them.
    pub fn from_lowercase(wire: &[u8]) -> Option<NameBuf> {
        let mut buf = [0u8; 255];
        let dst = buf.get_mut(..wire.len())?;
        for (d, s) in dst.iter_mut().zip(wire) {
            *d = s.to_ascii_lowercase();
        }
        Some(NameBuf { buf, len: wire.len() as u8 })
    }

    /// The name in uncompressed wire form, lowercased.
    pub fn as_wire(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        crate::name::write_presentation(self.as_wire(), &mut s)?;
        write!(f, "NameBuf({s})")
    }
}

/// The requester's EDNS(0) OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requester's UDP payload size in bytes, as sent; the encoder clamps it between 512 and
    /// the configured limit.
    pub udp_payload: u16,
    /// EDNS version; above 0 is answered BADVERS (RFC 6891 section 6.1.3).
    pub version: u8,
    /// DNSSEC OK bit (RFC 3225); gslbd signs nothing, so it changes no answer.
    pub dnssec_ok: bool,
    /// The Client Subnet option, if present and valid.
    pub client_subnet: Option<ClientSubnet>,
}

/// An EDNS Client Subnet option (RFC 7871 section 6), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// SOURCE PREFIX-LENGTH in bits: how much of `addr` the requester disclosed.
    pub source_prefix: u8,
    /// SCOPE PREFIX-LENGTH in bits as received (0 in queries, RFC 7871 section 6).
    pub scope_prefix: u8,
    /// The address with every bit past `source_prefix` zero.
    pub addr: IpAddr,
}

impl ClientSubnet {
    /// FAMILY as in the option: 1 for IPv4, 2 for IPv6 (IANA address family numbers).
    pub fn family(&self) -> u16 {
        match self.addr {
            IpAddr::V4(_) => 1,
            IpAddr::V6(_) => 2,
        }
    }
}

/// What to do with a packet that arrived on a DNS port.
// The Query variant is large (it holds the lowercased name inline) on purpose: boxing it
// would allocate for every query, and a Decoded lives on the stack for one query only.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'p> {
    /// A query the resolver answers.
    Query(Query<'p>),
    /// Answer with this error and no records.
    Error(ErrorReply<'p>),
    /// Say nothing: too short for a header, or a response (answering responses makes loops).
    Drop,
}

/// An error response: the header fields to copy, the question when it could be read, and the
/// requester's EDNS when it could be read (so the OPT record is echoed).
#[derive(Debug, Clone)]
pub struct ErrorReply<'p> {
    /// Message ID of the query.
    pub id: u16,
    /// OPCODE of the query, echoed.
    pub opcode: u8,
    /// Recursion Desired flag of the query, echoed.
    pub rd: bool,
    /// The rcode to answer: FORMERR, NOTIMP or BADVERS.
    pub rcode: u16,
    /// The raw question to echo, when it could be read; None answers with QDCOUNT 0.
    pub question: Option<&'p [u8]>,
    /// The requester's EDNS, when it could be read, so the response carries an OPT record.
    pub edns: Option<Edns>,
}

struct Reader<'p> {
    buf: &'p [u8],
    pos: usize,
}

impl<'p> Reader<'p> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self, n: usize) -> Option<&'p [u8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }
    /// An uncompressed name (a question name must not be compressed: nothing precedes it that
    /// a pointer could usefully point at).
    fn plain_name(&mut self) -> Option<&'p [u8]> {
        let start = self.pos;
        loop {
            let len = self.u8()? as usize;
            if len == 0 {
                break;
            }
            if len > crate::name::MAX_LABEL_LEN {
                return None;
            }
            self.bytes(len)?;
            if self.pos - start > crate::name::MAX_NAME_LEN {
                return None;
            }
        }
        (self.pos - start <= crate::name::MAX_NAME_LEN).then(|| &self.buf[start..self.pos])
    }
    /// Skips a possibly compressed name (in records after the question).
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len {
                0 => return Some(()),
                1..=63 => {
                    self.bytes(len as usize)?;
                }
                0xC0..=0xFF => {
                    self.u8()?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Reads a query packet and applies the gates.
pub fn decode(packet: &[u8]) -> Decoded<'_> {
    let Some(header) = packet.first_chunk::<HEADER_LEN>() else {
        return Decoded::Drop;
    };
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 != 0 {
        return Decoded::Drop;
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & 0x0100 != 0;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
    let mut reply = ErrorReply { id, opcode, rd, rcode: rcode::FORMERR, question: None, edns: None };
    let mut r = Reader { buf: packet, pos: HEADER_LEN };

    // The question, when there is exactly one and it reads.
    let question = if qdcount == 1 {
        let start = r.pos;
        match (r.plain_name(), r.u16(), r.u16()) {
            (Some(name), Some(qtype), Some(qclass)) => Some((name, qtype, qclass, &packet[start..r.pos])),
            _ => None,
        }
    } else {
        None
    };
    reply.question = question.map(|q| q.3);

    // Records after the question: only the additional section may hold anything in a query
    // (the OPT record, or TSIG which we do not implement and so ignore).
    let mut edns = None;
    let mut malformed = question.is_none() || ancount != 0 || nscount != 0;
    if question.is_some() {
        for _ in 0..arcount {
            match read_additional(&mut r) {
                Some(Extra::Opt(e)) => {
                    if edns.is_some() {
                        // RFC 6891 section 6.1.1: more than one OPT is FORMERR.
                        malformed = true;
                        break;
                    }
                    match e {
                        Ok(e) => edns = Some(e),
                        Err(e) => {
                            // Bad option contents: FORMERR, but echo the OPT so the
                            // requester sees we speak EDNS.
                            reply.edns = Some(e);
                            malformed = true;
                            break;
                        }
                    }
                }
                Some(Extra::Other) => {}
                None => {
                    malformed = true;
                    break;
                }
            }
        }
    }
    if reply.edns.is_none() {
        reply.edns = edns;
    }

    if opcode != 0 {
        reply.rcode = rcode::NOTIMP;
        return Decoded::Error(reply);
    }
    if malformed {
        return Decoded::Error(reply);
    }
    let Some((qname, qtype, qclass, question)) = question else {
        return Decoded::Error(reply);
    };
    if let Some(e) = edns
        && e.version > 0
    {
        reply.rcode = rcode::BADVERS;
        return Decoded::Error(reply);
    }
    if rtype::is_meta(qtype) && !matches!(qtype, rtype::ANY | rtype::AXFR | rtype::IXFR) {
        // OPT, MAILA/MAILB and the other meta types are not questions one can answer.
        // RFC 9824 section 3.3: NXNAME (128) in a question is FORMERR, as OPT is.
        reply.rcode = if matches!(qtype, rtype::OPT | rtype::NXNAME) { rcode::FORMERR } else { rcode::NOTIMP };
        return Decoded::Error(reply);
    }
    let Some(qname_lower) = NameBuf::from_lowercase(qname) else {
        return Decoded::Error(reply);
    };
    Decoded::Query(Query { id, opcode, rd, qname, qname_lower, qtype, qclass, question, edns })
}

enum Extra {
    /// The OPT record; `Err` carries what could be read of it when an option is malformed.
    Opt(Result<Edns, Edns>),
    Other,
}

fn read_additional(r: &mut Reader<'_>) -> Option<Extra> {
    let name_start = r.pos;
    r.skip_name()?;
    let is_root = r.pos - name_start == 1;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let rdlen = r.u16()? as usize;
    let rdata = r.bytes(rdlen)?;
    if rtype != rtype::OPT {
        return Some(Extra::Other);
    }
    if !is_root {
        return None;
    }
    let mut edns =
        Edns { udp_payload: class, version: (ttl >> 16) as u8, dnssec_ok: ttl & 0x8000 != 0, client_subnet: None };
    let mut o = Reader { buf: rdata, pos: 0 };
    while o.pos < rdata.len() {
        let (Some(code), Some(len)) = (o.u16(), o.u16()) else {
            return Some(Extra::Opt(Err(edns)));
        };
        let Some(data) = o.bytes(len as usize) else {
            return Some(Extra::Opt(Err(edns)));
        };
        if code == OPTION_CLIENT_SUBNET {
            if edns.client_subnet.is_some() {
                return Some(Extra::Opt(Err(edns)));
            }
            match parse_client_subnet(data) {
                Some(cs) => edns.client_subnet = Some(cs),
                None => return Some(Extra::Opt(Err(edns))),
            }
        }
        // Other options (cookies, NSID, padding, ...) are ignored, not echoed (RFC 6891).
    }
    Some(Extra::Opt(Ok(edns)))
}

/// RFC 7871 section 6: FAMILY 1 or 2, SOURCE PREFIX-LENGTH within the family, exactly
/// ceil(source/8) address octets, and no bits set past the source prefix. Anything else is
/// FORMERR (section 7.1.2 asks for it: a malformed option must not steer an answer).
pub fn parse_client_subnet(data: &[u8]) -> Option<ClientSubnet> {
    let (head, addr) = data.split_at_checked(4)?;
    let family = u16::from_be_bytes([head[0], head[1]]);
    let source = head[2];
    let scope = head[3];
    let max_bits = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max_bits || scope > max_bits || addr.len() != (source as usize).div_ceil(8) {
        return None;
    }
    if source % 8 != 0 {
        let last = *addr.last()?;
        if last & (0xFFu8 >> (source % 8)) != 0 {
            return None;
        }
    }
    let addr = if family == 1 {
        let mut b = [0u8; 4];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::from(b)
    } else {
        let mut b = [0u8; 16];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::from(b)
    };
    Some(ClientSubnet { source_prefix: source, scope_prefix: scope, addr })
}

#[cfg(test)]
mod tests;
