//! Record type and class numbers gslbd handles by name (IANA "Resource Record (RR) TYPEs").
//! Kept as plain `u16` so the hot path never converts to and from a library enum.

/// A: an IPv4 host address (RFC 1035 section 3.4.1).
pub const A: u16 = 1;
/// NS: an authoritative name server (RFC 1035 section 3.3.11).
pub const NS: u16 = 2;
/// CNAME: the canonical name of an alias (RFC 1035 section 3.3.1).
pub const CNAME: u16 = 5;
/// SOA: the start of a zone of authority (RFC 1035 section 3.3.13).
pub const SOA: u16 = 6;
/// PTR: a domain name pointer (RFC 1035 section 3.3.12).
pub const PTR: u16 = 12;
/// HINFO: host information (RFC 1035 section 3.3.2; RFC 8482 answers to ANY).
pub const HINFO: u16 = 13;
/// MX: a mail exchange (RFC 1035 section 3.3.9).
pub const MX: u16 = 15;
/// TXT: text strings (RFC 1035 section 3.3.14).
pub const TXT: u16 = 16;
/// AAAA: an IPv6 host address (RFC 3596).
pub const AAAA: u16 = 28;
/// SRV: the location of a service (RFC 2782).
pub const SRV: u16 = 33;
/// DNAME: redirection of a subtree (RFC 6672).
pub const DNAME: u16 = 39;
/// OPT: the EDNS(0) pseudo-record (RFC 6891); a meta type, never in a zone.
pub const OPT: u16 = 41;
/// DS: a delegation signer (RFC 4034 section 5).
pub const DS: u16 = 43;
/// RRSIG: a DNSSEC signature (RFC 4034 section 3).
pub const RRSIG: u16 = 46;
/// NSEC: DNSSEC authenticated denial (RFC 4034 section 4).
pub const NSEC: u16 = 47;
/// DNSKEY: a DNSSEC public key (RFC 4034 section 2).
pub const DNSKEY: u16 = 48;
/// NSEC3: hashed authenticated denial (RFC 5155).
pub const NSEC3: u16 = 50;
/// RFC 9824 compact denial: in an NSEC bitmap, "this name does not exist"; never a question.
pub const NXNAME: u16 = 128;
/// IXFR: incremental zone transfer query type (RFC 1995); a meta type.
pub const IXFR: u16 = 251;
/// AXFR: full zone transfer query type (RFC 5936); a meta type.
pub const AXFR: u16 = 252;
/// MAILB: mailbox-related records query type (RFC 1035 section 3.2.3, obsolete); a meta type.
pub const MAILB: u16 = 253;
/// MAILA: mail agent records query type (RFC 1035 section 3.2.3, obsolete); a meta type.
pub const MAILA: u16 = 254;
/// ANY (`*`): a request for all records (RFC 1035 section 3.2.3, RFC 8482); a meta type.
pub const ANY: u16 = 255;
/// CAA: certification authority authorization (RFC 8659).
pub const CAA: u16 = 257;

/// Class IN, the only class gslbd serves.
pub const CLASS_IN: u16 = 1;
/// Class CH (Chaos); not served.
pub const CLASS_CH: u16 = 3;
/// Class ANY (`*`, RFC 1035 section 3.2.5): accepted in queries and answered as IN.
pub const CLASS_ANY: u16 = 255;

/// Types whose rdata names may be compressed on output (RFC 3597 section 4).
pub fn has_compressible_rdata(rtype: u16) -> bool {
    matches!(rtype, NS | CNAME | SOA | PTR | MX)
}

/// Types that only exist in queries (meta types, RFC 6895 section 3.1): never in a zone.
pub fn is_meta(rtype: u16) -> bool {
    matches!(rtype, OPT | IXFR | AXFR | MAILB | MAILA | ANY) || (128..=255).contains(&rtype)
}

/// The mnemonic for a type ("AAAA"), or RFC 3597's "TYPE65280" for one without a name.
pub fn name(rtype: u16) -> String {
    match hickory_proto::rr::RecordType::from(rtype) {
        hickory_proto::rr::RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}
