//! The response to one query as a value: rcode, flags and the RRsets of each section, each
//! placed with its owner. Below both the answer algorithm (`resolve`, which builds it) and
//! the codec (`wire`, which writes it), so neither imports the other (as NLnetLabs/domain's
//! `zonetree/answer.rs`).

use smallvec::SmallVec;

use crate::region::RegionId;
use crate::zone::store::RRset;

/// Response codes (RFC 1035 section 4.1.1, RFC 6891).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const NOTAUTH: u16 = 9;
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
    pub owner: Owner<'a>,
    pub rrset: &'a RRset,
    /// A TTL to use instead of the RRset's own.
    pub ttl_override: Option<u32>,
}

impl<'a> PlacedRRset<'a> {
    pub fn new(owner: Owner<'a>, rrset: &'a RRset) -> Self {
        PlacedRRset { owner, rrset, ttl_override: None }
    }
}

/// The response to one query, as values: rcode, AA, and the RRsets of each section.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    pub rcode: u16,
    pub aa: bool,
    pub answer: SmallVec<[PlacedRRset<'a>; 4]>,
    pub authority: SmallVec<[PlacedRRset<'a>; 2]>,
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
    pub fn rcode(rcode: u16) -> Self {
        Answer { rcode, ..Default::default() }
    }
}

/// Transport the query came over: decides whether ANY gets a minimal answer and whether a
/// zone transfer is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}
