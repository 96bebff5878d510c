//! Record type and class numbers gslbd handles by name (IANA "Resource Record (RR) TYPEs").
//! Kept as plain `u16` so the hot path never converts to and from a library enum.

pub const A: u16 = 1;
pub const NS: u16 = 2;
pub const CNAME: u16 = 5;
pub const SOA: u16 = 6;
pub const PTR: u16 = 12;
pub const HINFO: u16 = 13;
pub const MX: u16 = 15;
pub const TXT: u16 = 16;
pub const AAAA: u16 = 28;
pub const SRV: u16 = 33;
pub const DNAME: u16 = 39;
pub const OPT: u16 = 41;
pub const DS: u16 = 43;
pub const RRSIG: u16 = 46;
pub const NSEC: u16 = 47;
pub const DNSKEY: u16 = 48;
pub const NSEC3: u16 = 50;
/// RFC 9824 compact denial: in an NSEC bitmap, "this name does not exist"; never a question.
pub const NXNAME: u16 = 128;
pub const IXFR: u16 = 251;
pub const AXFR: u16 = 252;
pub const MAILB: u16 = 253;
pub const MAILA: u16 = 254;
pub const ANY: u16 = 255;
pub const CAA: u16 = 257;

/// Class IN, the only class gslbd serves.
pub const CLASS_IN: u16 = 1;
pub const CLASS_CH: u16 = 3;
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
