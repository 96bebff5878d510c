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
    /// Owner name, in the case the operator wrote it (absolute after `$ORIGIN` expansion).
    pub owner: Name,
    /// Record type number (see [`crate::rtype`]).
    pub rtype: u16,
    /// Time to live in seconds, from the record, `$TTL` or the previous record.
    pub ttl: u32,
    /// Rdata in uncompressed wire format.
    pub rdata: Box<[u8]>,
    /// Where the record was written.
    pub pos: SourcePos,
}

/// Where a record or an error comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    /// The zone file (or `$INCLUDE`d file, or zones directory) the position is in.
    pub file: Arc<PathBuf>,
    /// Line, 1-based; 0 when the error is about the whole file.
    pub line: u32,
    /// Column, 1-based; 0 when not known.
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
    /// Where the problem was found.
    pub pos: SourcePos,
    /// What is wrong.
    pub kind: ZoneErrorKind,
}

/// What can be wrong in a zone file or zones directory; each variant carries the input it is
/// about, and its `Display` is the message after `file:line:col: error:`.
#[derive(Debug, thiserror::Error)]
pub enum ZoneErrorKind {
    /// The file or directory could not be read.
    #[error("cannot read zone file: {0}")]
    Unreadable(std::io::Error),
    /// An owner name, origin or rdata name is not a valid domain name.
    #[error("{0}")]
    BadName(#[from] NameError),
    /// A record type mnemonic we do not know (neither a name nor `TYPEnnn`).
    #[error("unknown record type {0:?}")]
    UnknownType(String),
    /// The rdata does not parse for its type: `rtype` is the type as written, `reason` what the
    /// rdata parser said.
    #[error("bad {rtype} record data: {reason}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    BadRdata { rtype: String, reason: String },
    /// A TTL that is neither seconds nor BIND units (`1h30m`), or above 2^31 - 1 (RFC 2181 section 8).
    #[error("bad TTL {0:?} (want seconds, or units like 1h30m, at most 2147483647)")]
    BadTtl(String),
    /// A class other than IN.
    #[error("class {0} is not served (only IN)")]
    UnsupportedClass(String),
    /// A `$` directive other than `$ORIGIN`, `$TTL` and `$INCLUDE`.
    #[error("unknown directive {0}")]
    UnknownDirective(String),
    /// A lexical or structural problem, described by the text.
    #[error("{0}")]
    Syntax(&'static str),
    /// An `$INCLUDE` path that resolves outside the zones directory.
    #[error("$INCLUDE {0:?} is outside the zones directory")]
    IncludeOutsideRoot(PathBuf),
    /// An `$INCLUDE` that includes itself, directly or through other files.
    #[error("$INCLUDE {0:?} includes itself (directly or through another file)")]
    IncludeLoop(PathBuf),
    /// A record whose `owner` is not at or below the zone's `origin`.
    #[error("owner {owner} is outside origin {origin}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    OutOfZone { owner: Name, origin: Name },
    /// A record without a TTL, and no `$TTL` or earlier record to take one from.
    #[error("no TTL: give one on the record or set $TTL")]
    MissingTtl,
    /// The zone (named by its apex) has no SOA at its apex.
    #[error("zone {0} has no SOA record at its apex")]
    MissingSoa(Name),
    /// The zone (named by its apex) has more than one SOA.
    #[error("zone {0} has more than one SOA record")]
    MultipleSoa(Name),
    /// An SOA record at this owner, which is not the apex.
    #[error("SOA record at {0}, not at the zone apex")]
    SoaNotAtApex(Name),
    /// The zone (named by its apex) has no NS RRset at its apex.
    #[error("zone {0} has no NS records at its apex")]
    MissingApexNs(Name),
    /// `owner` has a CNAME beside other data (RFC 2181 section 10.1).
    #[error("{owner} has a CNAME and other data (RFC 2181 section 10.1)")]
    #[allow(missing_docs, reason = "field named in the variant's doc")]
    CnameAndOtherData { owner: Name },
    /// `owner` has more than one CNAME record.
    #[error("{owner} has more than one CNAME record")]
    #[allow(missing_docs, reason = "field named in the variant's doc")]
    MultipleCname { owner: Name },
    /// The same record (`owner`, `rtype`, rdata) twice; `first_line` is where it first appeared.
    #[error("duplicate {rtype} record at {owner} (first at line {first_line})")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Duplicate { owner: Name, rtype: String, first_line: u32 },
    /// Records of one RRset (`owner`, `rtype`) with different TTLs: `ttl` here, `first_ttl` on
    /// `first_line` (seconds; RFC 2181 section 5.2 wants one TTL per RRset).
    #[error(
        "TTL {ttl} of {rtype} record at {owner} differs from {first_ttl} of the same RRset (line {first_line}); RFC 2181 section 5.2 wants one TTL per RRset"
    )]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    TtlMismatch { owner: Name, rtype: String, ttl: u32, first_ttl: u32, first_line: u32 },
    /// A meta or query type (ANY, AXFR, IXFR, OPT, ...) written as a record at `owner`; `rtype`
    /// is its name.
    #[error("{rtype} record at {owner}: type is not allowed in a zone file")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    MetaType { owner: Name, rtype: String },
    /// Two files of the zones directory give the same zone `apex`; `other` is the file loaded
    /// first.
    #[error("zone {apex} is already served from {}", other.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    DuplicateZone { apex: Name, other: PathBuf },
    /// The parser stopped after this many errors in one file (the last error reported).
    #[error("too many errors; stopped after {0}")]
    TooMany(usize),
}
