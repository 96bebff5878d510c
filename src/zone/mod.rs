//! RFC 1035 zone files -> immutable [`Zone`] data.
//!
//! `parse` turns a zone file (with its `$INCLUDE`s) into a flat list of [`Record`]s and
//! reports every syntax error with file:line:col. `store` checks the zone as a whole (one SOA
//! at the apex, no CNAME beside other data, no duplicates) and builds the name index the
//! query path reads.

pub mod parse;
pub mod set;
pub mod store;

pub use set::ZoneSet;
pub use store::Zone;

use std::path::PathBuf;
use std::sync::Arc;

use crate::name::{Name, NameError};

/// One resource record as read from a zone file: owner in the case the operator wrote,
/// rdata in uncompressed wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Box<[u8]>,
    pub pos: SourcePos,
}

/// Where a record or an error comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: Arc<PathBuf>,
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for SourcePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.col) {
            (0, _) => write!(f, "{}", self.file.display()),
            (l, 0) => write!(f, "{}:{l}", self.file.display()),
            (l, c) => write!(f, "{}:{l}:{c}", self.file.display()),
        }
    }
}

/// A problem in a zone file, with the place it was found.
#[derive(Debug, thiserror::Error)]
#[error("{pos}: error: {kind}")]
pub struct ZoneError {
    pub pos: SourcePos,
    pub kind: ZoneErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneErrorKind {
    #[error("cannot read zone file: {0}")]
    Unreadable(std::io::Error),
    #[error("{0}")]
    BadName(#[from] NameError),
    #[error("unknown record type {0:?}")]
    UnknownType(String),
    #[error("bad {rtype} record data: {reason}")]
    BadRdata { rtype: String, reason: String },
    #[error("bad TTL {0:?} (want seconds, or units like 1h30m, at most 2147483647)")]
    BadTtl(String),
    #[error("class {0} is not served (only IN)")]
    UnsupportedClass(String),
    #[error("unknown directive {0}")]
    UnknownDirective(String),
    #[error("{0}")]
    Syntax(&'static str),
    #[error("$INCLUDE {0:?} is outside the zones directory")]
    IncludeOutsideRoot(PathBuf),
    #[error("$INCLUDE {0:?} includes itself (directly or through another file)")]
    IncludeLoop(PathBuf),
    #[error("owner {owner} is outside origin {origin}")]
    OutOfZone { owner: Name, origin: Name },
    #[error("no TTL: give one on the record or set $TTL")]
    MissingTtl,
    #[error("zone {0} has no SOA record at its apex")]
    MissingSoa(Name),
    #[error("zone {0} has more than one SOA record")]
    MultipleSoa(Name),
    #[error("SOA record at {0}, not at the zone apex")]
    SoaNotAtApex(Name),
    #[error("zone {0} has no NS records at its apex")]
    MissingApexNs(Name),
    #[error("{owner} has a CNAME and other data (RFC 2181 section 10.1)")]
    CnameAndOtherData { owner: Name },
    #[error("{owner} has more than one CNAME record")]
    MultipleCname { owner: Name },
    #[error("duplicate {rtype} record at {owner} (first at line {first_line})")]
    Duplicate { owner: Name, rtype: String, first_line: u32 },
    #[error(
        "TTL {ttl} of {rtype} record at {owner} differs from {first_ttl} of the same RRset (line {first_line}); RFC 2181 section 5.2 wants one TTL per RRset"
    )]
    TtlMismatch { owner: Name, rtype: String, ttl: u32, first_ttl: u32, first_line: u32 },
    #[error("{rtype} record at {owner}: type is not allowed in a zone file")]
    MetaType { owner: Name, rtype: String },
    #[error("zone {apex} is already served from {}", other.display())]
    DuplicateZone { apex: Name, other: PathBuf },
    #[error("too many errors; stopped after {0}")]
    TooMany(usize),
}
