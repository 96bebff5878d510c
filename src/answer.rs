//! The response to one query as a value: rcode, flags and the RRsets of each section, each
//! placed with its owner. Below both the answer algorithm (`resolve`, which builds it) and
//! the codec (`wire`, which writes it), so neither imports the other (as NLnetLabs/domain's
//! `zonetree/answer.rs`).

use smallvec::SmallVec;

use crate::region::RegionId;
use crate::zone::store::RRset;

/// Response codes (RFC 1035 section 4.1.1, RFC 6891).
pub mod rcode {
    /// No error (RFC 1035 section 4.1.1).
    pub const NOERROR: u16 = 0;
    /// Format error: the query could not be interpreted (RFC 1035 section 4.1.1).
    pub const FORMERR: u16 = 1;
    /// Server failure: an internal fault, or a service configured `when_all_down = "servfail"`.
    pub const SERVFAIL: u16 = 2;
    /// Name error: the name does not exist in the zone (RFC 1035 section 4.1.1, RFC 2308).
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented: an opcode other than QUERY (RFC 1035 section 4.1.1).
    pub const NOTIMP: u16 = 4;
    /// Refused: a name outside every served zone, a class other than IN, or a request policy
    /// forbids (e.g. a transfer the ACL does not allow).
    pub const REFUSED: u16 = 5;
    /// Not authoritative for the zone (RFC 2136 section 2.2); named for metrics.
    pub const NOTAUTH: u16 = 9;
    /// Bad OPT version: EDNS version above 0 (RFC 6891 section 6.1.3); needs the extended rcode bits.
    pub const BADVERS: u16 = 16;

    /// Name for logs and metrics.
    pub fn name(rcode: u16) -> &'static str {
        match rcode {
            NOERROR => "NOERROR",
            FORMERR => "FORMERR",
            SERVFAIL => "SERVFAIL",
            NXDOMAIN => "NXDOMAIN",
            NOTIMP => "NOTIMP",
            REFUSED => "REFUSED",
            NOTAUTH => "NOTAUTH",
            BADVERS => "BADVERS",
            _ => "OTHER",
        }
    }
}

/// Whose name a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The question name, written as a pointer to the question (keeps the requester's case).
    Question,
    /// A lowercased wire name from the zone data.
    Name(&'a [u8]),
}

/// One RRset placed in a section.
#[derive(Debug, Clone, Copy)]
pub struct PlacedRRset<'a> {
    /// Whose name the records carry.
    pub owner: Owner<'a>,
    /// The records, from the zone data or a service's built RRsets.
    pub rrset: &'a RRset,
    /// A TTL to use instead of the RRset's own.
    pub ttl_override: Option<u32>,
}

impl<'a> PlacedRRset<'a> {
    /// Places `rrset` under `owner` with its own TTL.
    pub fn new(owner: Owner<'a>, rrset: &'a RRset) -> Self {
        PlacedRRset { owner, rrset, ttl_override: None }
    }
}

/// The response to one query, as values: rcode, AA, and the RRsets of each section.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    /// Response code, extended ones (above 15) included.
    pub rcode: u16,
    /// Authoritative Answer flag: set for answers from a served zone, clear on referrals,
    /// REFUSED, SERVFAIL and other errors.
    /// Authoritative Answer flag: set for answers from a served zone, clear on referrals,
    /// REFUSED, SERVFAIL and other errors.
    pub aa: bool,
    /// ANSWER section, in order.
    pub answer: SmallVec<[PlacedRRset<'a>; 4]>,
    /// AUTHORITY section: the SOA of negative answers, the NS of referrals (4 inline: a
    /// signed denial is SOA, NSEC and their RRSIGs, with no heap allocation).
    pub authority: SmallVec<[PlacedRRset<'a>; 4]>,
    /// ADDITIONAL section: glue and other address records (the OPT record is added by the encoder).
    pub additional: SmallVec<[PlacedRRset<'a>; 4]>,
    /// SCOPE PREFIX-LENGTH for the Client Subnet option: 0 when the answer does not depend on
    /// the client's address.
    pub ecs_scope: u8,
    /// Set on referrals: glue in ADDITIONAL is needed, so if it does not fit, truncate.
    pub glue_required: bool,
    /// The service answered (its index) and the regions its policy chain chose, a
    /// `policy::Candidates` (for metrics and explain).
    pub service: Option<(usize, SmallVec<[RegionId; 8]>)>,
}

impl<'a> Answer<'a> {
    /// An answer with only this rcode and no records (AA clear).
    pub fn rcode(rcode: u16) -> Self {
        Answer { rcode, ..Default::default() }
    }
}

/// Transport the query came over: decides whether ANY gets a minimal answer and whether a
/// zone transfer is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over UDP: answers may be truncated (TC) and ANY gets a minimal answer (RFC 8482).
    Udp,
    /// Over TCP: full answers, and zone transfers (AXFR) are possible.
    Tcp,
}
