//! The immutable zone index the query path reads.
//!
//! A zone is a hash map from lowercased wire-format owner names to [`Node`]s. Every empty
//! non-terminal between an owner and the apex gets a node of its own at build time, and every
//! node at or below a zone cut is marked, so a lookup is one hash probe for a name that exists
//! and one probe per label between the query name and the apex for one that does not: NXDOMAIN
//! costs the same on a ten-record zone as on a million-record one (a random-subdomain flood
//! cannot turn misses into scans).

use std::collections::HashMap;
use std::path::Path;

use smallvec::SmallVec;

use super::{Record, ZoneError, ZoneErrorKind, parse};
use crate::name::Name;
use crate::rtype;

type Map<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// The records of one type at one owner: rdata stored back to back as
/// `rdlength (u16, big endian) | rdata`, in the order of the zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    /// Record type number (see [`crate::rtype`]).
    pub rtype: u16,
    /// Time to live in seconds, one for the whole RRset (RFC 2181 section 5.2).
    pub ttl: u32,
    count: u16,
    data: Box<[u8]>,
}

impl RRset {
    /// Builds an RRset from rdata values (already in wire format).
    pub fn new<'a>(rtype: u16, ttl: u32, rdatas: impl IntoIterator<Item = &'a [u8]>) -> RRset {
        let mut data = Vec::new();
        let mut count = 0u16;
        for rd in rdatas {
            data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            data.extend_from_slice(rd);
            count += 1;
        }
        RRset { rtype, ttl, count, data: data.into_boxed_slice() }
    }

    /// A copy with another TTL (negative answers carry the SOA with the negative TTL).
    pub fn with_ttl(&self, ttl: u32) -> RRset {
        RRset { ttl, ..self.clone() }
    }

    /// Number of records in the RRset.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the RRset holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rdata of each record, in zone-file order.
    pub fn rdatas(&self) -> RdataIter<'_> {
        RdataIter { rest: &self.data }
    }
}

/// Iterator over the rdata of an [`RRset`], each in wire format without its length prefix;
/// returned by [`RRset::rdatas`].
pub struct RdataIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RdataIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<2>()?;
        let len = u16::from_be_bytes(*len) as usize;
        let (rd, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        Some(rd)
    }
}

const CUT: u8 = 1;
const BELOW_CUT: u8 = 2;

/// All RRsets at one owner name. An empty node is an empty non-terminal.
#[derive(Debug, Default)]
pub struct Node {
    /// Most names have one RRset: it is held inline, without an allocation of its own.
    rrsets: SmallVec<[RRset; 1]>,
    flags: u8,
}

impl Node {
    /// The RRset of this type at the node, if any.
    pub fn rrset(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }

    /// All RRsets at the node.
    pub fn rrsets(&self) -> &[RRset] {
        &self.rrsets
    }

    /// True for a delegation point (NS records below the apex).
    pub fn is_cut(&self) -> bool {
        self.flags & CUT != 0
    }

    /// True for names under a delegation point: glue, or occluded data.
    pub fn is_below_cut(&self) -> bool {
        self.flags & BELOW_CUT != 0
    }

    /// True for an empty non-terminal: the name exists only because names below it do
    /// (RFC 4592 section 2.2.2), so it answers NODATA.
    pub fn is_empty_non_terminal(&self) -> bool {
        self.rrsets.is_empty()
    }
}

/// What the zone holds for a query name (RFC 1034 section 4.3.2, step 3).
#[derive(Debug)]
pub enum Lookup<'z> {
    /// The name exists in the authoritative part of the zone (possibly as an empty
    /// non-terminal).
    Found(&'z Node),
    /// The name is at or below a delegation point; `cut` is that point's owner key.
    /// `node` is the node at the cut, holding its NS RRset.
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Delegation { cut: &'z [u8], node: &'z Node },
    /// The name does not exist, but the wildcard `*.<closest encloser>` matches it.
    Wildcard(&'z Node),
    /// The name does not exist and no wildcard covers it.
    NxDomain,
}

/// One served zone.
#[derive(Debug)]
pub struct Zone {
    apex: Name,
    soa: RRset,
    /// The SOA with TTL = min(SOA TTL, MINIMUM), for negative answers (RFC 2308 section 3).
    negative_soa: RRset,
    nodes: Map<Node>,
    record_count: usize,
    /// The zone file it was read from.
    source: std::path::PathBuf,
}

impl Zone {
    /// Reads and checks a zone file. `root` bounds `$INCLUDE`s.
    pub fn load(path: &Path, apex: &Name, root: &Path) -> Result<Zone, Vec<ZoneError>> {
        let records = parse::parse_file(path, apex, root)?;
        Zone::from_records(apex, records, path)
    }

    /// Builds a zone from parsed records, checking what only the whole zone can tell: one SOA
    /// at the apex, NS at the apex, no CNAME beside other data, no duplicate records, one TTL
    /// per RRset. Every problem is reported, not only the first.
    ///
    /// Built for size: records are sorted in place by (owner, type) — a stable sort, so an
    /// RRset keeps the zone file's order — and grouped in one pass; owner names move into the
    /// index without copies, and a node with one RRset holds it inline. A million-record zone
    /// loads in about a second.
    pub fn from_records(apex: &Name, mut records: Vec<Record>, file: &Path) -> Result<Zone, Vec<ZoneError>> {
        let apex = apex.to_lowercase();
        let record_count = records.len();
        let mut errors = Vec::new();
        for r in &mut records {
            r.owner.make_ascii_lowercase();
        }
        records.sort_by(|a, b| a.owner.as_wire().cmp(b.owner.as_wire()).then(a.rtype.cmp(&b.rtype)));
        let mut nodes: Map<Node> = Map::with_capacity_and_hasher(record_count / 2 + 16, Default::default());
        let mut soa = None;
        let mut rest = &mut records[..];
        while !rest.is_empty() {
            let owner_len = rest.iter().take_while(|r| r.owner == rest[0].owner).count();
            let (group, tail) = rest.split_at_mut(owner_len);
            rest = tail;
            let owner = group[0].owner.clone();
            let mut sets: SmallVec<[RRset; 1]> = SmallVec::new();
            let mut i = 0;
            while i < group.len() {
                let n = group[i..].iter().take_while(|r| r.rtype == group[i].rtype).count();
                let same_type = &group[i..i + n];
                i += n;
                let first = &same_type[0];
                let mut kept: Vec<&[u8]> = Vec::with_capacity(n);
                for r in same_type {
                    // Duplicate check: linear for ordinary RRsets, sorted for huge ones.
                    let is_dup = if kept.len() < 32 { kept.contains(&&r.rdata[..]) } else { false };
                    if is_dup {
                        errors.push(err(
                            r,
                            ZoneErrorKind::Duplicate {
                                owner: owner.clone(),
                                rtype: rtype::name(r.rtype),
                                first_line: first.pos.line,
                            },
                        ));
                        continue;
                    }
                    if r.ttl != first.ttl {
                        errors.push(err(
                            r,
                            ZoneErrorKind::TtlMismatch {
                                owner: owner.clone(),
                                rtype: rtype::name(r.rtype),
                                ttl: r.ttl,
                                first_ttl: first.ttl,
                                first_line: first.pos.line,
                            },
                        ));
                        continue;
                    }
                    kept.push(&r.rdata);
                }
                if kept.len() >= 32 {
                    let mut sorted = kept.clone();
                    sorted.sort_unstable();
                    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                        let dup = same_type.iter().rev().find(|r| &r.rdata[..] == w[0]).unwrap_or(first);
                        errors.push(err(
                            dup,
                            ZoneErrorKind::Duplicate {
                                owner: owner.clone(),
                                rtype: rtype::name(dup.rtype),
                                first_line: first.pos.line,
                            },
                        ));
                    }
                }
                sets.push(RRset::new(first.rtype, first.ttl, kept));
            }
            let first_of = |t: u16| group.iter().find(|r| r.rtype == t).unwrap_or(&group[0]);
            if let Some(cname) = sets.iter().find(|s| s.rtype == rtype::CNAME) {
                if cname.len() > 1 {
                    errors.push(err(&group[0], ZoneErrorKind::MultipleCname { owner: owner.clone() }));
                }
                if sets.len() > 1 {
                    let other = group.iter().find(|r| r.rtype != rtype::CNAME).unwrap_or(&group[0]);
                    errors.push(err(other, ZoneErrorKind::CnameAndOtherData { owner: owner.clone() }));
                }
            }
            if let Some(set) = sets.iter().find(|s| s.rtype == rtype::SOA) {
                if owner != apex {
                    errors.push(err(first_of(rtype::SOA), ZoneErrorKind::SoaNotAtApex(owner.clone())));
                } else if set.len() > 1 {
                    errors.push(err(first_of(rtype::SOA), ZoneErrorKind::MultipleSoa(apex.clone())));
                } else {
                    soa = Some(set.clone());
                }
            }
            let flags = if owner != apex && sets.iter().any(|s| s.rtype == rtype::NS) { CUT } else { 0 };
            nodes.insert(owner.into_wire(), Node { rrsets: sets, flags });
        }
        drop(records);
        // Whole-zone problems have no line of their own: they name the file.
        let pos = super::SourcePos { file: std::sync::Arc::new(file.to_path_buf()), line: 0, col: 0 };
        let Some(soa) = soa else {
            errors.push(ZoneError { pos, kind: ZoneErrorKind::MissingSoa(apex.clone()) });
            return Err(errors);
        };
        if nodes.get(apex.as_wire()).and_then(|n| n.rrset(rtype::NS)).is_none() {
            errors.push(ZoneError { pos, kind: ZoneErrorKind::MissingApexNs(apex.clone()) });
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.pos.file, a.pos.line, a.pos.col).cmp(&(&b.pos.file, b.pos.line, b.pos.col)));
            return Err(errors);
        }
        add_empty_non_terminals(&mut nodes, apex.as_wire());
        mark_below_cuts(&mut nodes, apex.as_wire());
        nodes.shrink_to_fit();
        release_freed_memory();
        let negative_soa = soa.with_ttl(soa.ttl.min(soa_minimum(&soa)));
        Ok(Zone { source: file.to_path_buf(), apex, soa, negative_soa, nodes, record_count })
    }

    /// Adds `set` at the apex, replacing an RRset of its type (types stay in order).
    pub fn publish_apex(&mut self, set: RRset) {
        if let Some(node) = self.nodes.get_mut(self.apex.as_wire()) {
            node.rrsets.retain(|s| s.rtype != set.rtype);
            let at = node.rrsets.iter().position(|s| s.rtype > set.rtype).unwrap_or(node.rrsets.len());
            node.rrsets.insert(at, set);
        }
    }

    /// The apex, lowercased.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The SOA RRset at the apex, with its own TTL (for SOA queries and transfers).
    pub fn soa(&self) -> &RRset {
        &self.soa
    }

    /// The SOA as it goes into the AUTHORITY section of NXDOMAIN and NODATA answers.
    pub fn negative_soa(&self) -> &RRset {
        &self.negative_soa
    }

    /// The zone file the zone was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of records loaded from the zone file (including `$INCLUDE`d files).
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The node at exactly this lowercased name, ignoring delegations (for glue and transfers).
    pub fn node(&self, lower: &[u8]) -> Option<&Node> {
        self.nodes.get(lower)
    }

    /// The node at exactly this lowercased name with its stored key, ignoring delegations.
    pub fn node_entry(&self, lower: &[u8]) -> Option<(&[u8], &Node)> {
        self.nodes.get_key_value(lower).map(|(k, v)| (&k[..], v))
    }

    /// Every (lowercased owner, node), in no particular order (for zone transfers).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Node)> {
        self.nodes.iter().map(|(k, v)| (&k[..], v))
    }

    /// Finds what the zone says about `qname` (lowercased wire form, at or below the apex).
    pub fn lookup(&self, qname: &[u8]) -> Lookup<'_> {
        if let Some((key, node)) = self.nodes.get_key_value(qname) {
            if node.is_cut() || node.is_below_cut() {
                return self.delegation_above(key, node);
            }
            return Lookup::Found(node);
        }
        // Walk up to the closest encloser: it exists, because the apex does.
        let apex_len = self.apex.as_wire().len();
        let mut i = 0;
        while qname.len() - i > apex_len {
            i += 1 + qname[i] as usize;
            let ancestor = &qname[i..];
            let Some((key, node)) = self.nodes.get_key_value(ancestor) else {
                continue;
            };
            if node.is_cut() || node.is_below_cut() {
                return self.delegation_above(key, node);
            }
            // RFC 4592: the source of synthesis is `*.<closest encloser>`.
            let mut buf = [0u8; 257];
            buf[0] = 1;
            buf[1] = b'*';
            let Some(dst) = buf.get_mut(2..2 + ancestor.len()) else {
                return Lookup::NxDomain;
            };
            dst.copy_from_slice(ancestor);
            return match self.nodes.get(&buf[..2 + ancestor.len()]) {
                Some(wild) => Lookup::Wildcard(wild),
                None => Lookup::NxDomain,
            };
        }
        Lookup::NxDomain
    }

    /// From a node at or below a cut, the highest cut above it (RFC 1034: the first cut on
    /// the way down from the apex wins).
    fn delegation_above<'z>(&'z self, name: &'z [u8], node: &'z Node) -> Lookup<'z> {
        let mut found: (&[u8], &Node) = (name, node);
        let apex_len = self.apex.as_wire().len();
        let mut i = 0;
        while name.len() - i > apex_len {
            i += 1 + name[i] as usize;
            if let Some((k, n)) = self.nodes.get_key_value(&name[i..])
                && n.is_cut()
            {
                found = (k, n);
            }
        }
        if !found.1.is_cut() {
            // Below-cut flag without a cut above cannot happen: the flags are derived from
            // the cuts. Treat it as data rather than panic.
            return Lookup::Found(node);
        }
        Lookup::Delegation { cut: found.0, node: found.1 }
    }
}

/// The MINIMUM field: the last 4 octets of SOA rdata.
fn soa_minimum(soa: &RRset) -> u32 {
    soa.rdatas().next().and_then(|rd| rd.last_chunk::<4>()).map_or(0, |b| u32::from_be_bytes(*b))
}

fn err(r: &Record, kind: ZoneErrorKind) -> ZoneError {
    ZoneError { pos: r.pos.clone(), kind }
}

/// Gives every name between an owner and the apex a node, so that existence checks are one
/// probe and empty non-terminals answer NODATA (RFC 8020), not NXDOMAIN.
fn add_empty_non_terminals(nodes: &mut Map<Node>, apex: &[u8]) {
    let mut missing: Vec<Box<[u8]>> = Vec::new();
    for owner in nodes.keys() {
        let mut i = 0;
        while owner.len() - i > apex.len() {
            i += 1 + owner[i] as usize;
            let ancestor = &owner[i..];
            if nodes.contains_key(ancestor) {
                // Its own ancestors are checked from it.
                break;
            }
            missing.push(ancestor.into());
        }
    }
    for m in missing {
        nodes.entry(m).or_default();
    }
}

/// Marks every node strictly below a cut, so that a lookup of glue or occluded data finds out
/// with the one probe it already made.
fn mark_below_cuts(nodes: &mut Map<Node>, apex: &[u8]) {
    if !nodes.values().any(Node::is_cut) {
        return;
    }
    let below: Vec<Box<[u8]>> = nodes
        .keys()
        .filter(|owner| {
            let mut i = 0;
            while owner.len() - i > apex.len() {
                i += 1 + owner[i] as usize;
                if nodes.get(&owner[i..]).is_some_and(Node::is_cut) {
                    return true;
                }
            }
            false
        })
        .cloned()
        .collect();
    for owner in below {
        if let Some(n) = nodes.get_mut(&owner) {
            n.flags |= BELOW_CUT;
        }
    }
}

/// Hands memory freed after a big load back to the kernel. glibc keeps freed heap pages
/// otherwise, and a million-record zone's parse leaves a few hundred megabytes of them.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
