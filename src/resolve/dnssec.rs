//! DNSSEC for one answer, when the query has DO=1 and the zone has keys: an RRSIG after
//! every authoritative RRset, compact denial of existence (RFC 9824) for NXDOMAIN and
//! NODATA, and the DS or its denial at a delegation.
//!
//! Two steps, so the signed answer can borrow what is made here: [`sign`] computes the
//! extra RRsets into a [`Signed`] (from the worker's signature cache), then
//! [`Signed::apply`] places them. Unsigned zones and DO=0 queries never get here.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::answer::{Answer, Owner, PlacedRRset, rcode};
use crate::dnssec::cache::Kind;
use crate::dnssec::{Signer, Validity, ZoneKeys};
use crate::rtype;
use crate::snapshot::Snapshot;
use crate::wire::{NameBuf, Query};
use crate::zone::Zone;
use crate::zone::store::{Lookup, RRset};

use crate::rtype::NXNAME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

/// The RRsets DNSSEC adds to one answer.
#[derive(Default)]
pub struct Signed<'s> {
    /// (section, index of the covered RRset in it, its RRSIG RRset).
    rrsigs: SmallVec<[(Section, usize, Arc<RRset>); 6]>,
    /// The NSEC of a denial (or of an insecure delegation) and its RRSIG; true when its
    /// owner is the question name (written as a pointer to it, keeping the case).
    nsec: Option<(NameBuf, RRset, Arc<RRset>, bool)>,
    /// The DS RRset a referral adds (owner the cut, from the zone) and its RRSIG.
    ds: Option<(&'s [u8], &'s RRset, Arc<RRset>)>,
    /// NXDOMAIN becomes NOERROR with compact denial.
    rcode: Option<u16>,
    /// The budget of fresh signatures is spent: answer SERVFAIL.
    is_refused: bool,
}

/// The lowercased wire form of an RRset's owner.
fn owner_lower(owner: Owner<'_>, query: &Query<'_>) -> Option<NameBuf> {
    match owner {
        Owner::Question => Some(query.qname_lower.clone()),
        Owner::Name(n) => NameBuf::from_lowercase(n),
    }
}

/// The zone whose keys sign `rtype` at `owner` (DS at a served child's apex: the parent),
/// and whether the RRset is authoritative data there (not NS or glue at or below a cut).
fn signing_zone<'s>(snap: &'s Snapshot, owner: &[u8], rtype_: u16) -> Option<(&'s Zone, &'s Arc<ZoneKeys>)> {
    let mut zone = snap.zones.find(owner)?;
    if rtype_ == rtype::DS
        && zone.apex().as_wire() == owner
        && let Some(parent) = snap.zones.find_parent(zone)
    {
        zone = parent;
    }
    let keys = snap.keys.zone(zone.apex().as_wire())?;
    match zone.lookup(owner) {
        Lookup::Delegation { cut, .. } if !(rtype_ == rtype::DS && cut == owner) => None,
        _ => Some((zone, keys)),
    }
}

/// Computes the DNSSEC records for `ans`. None when nothing in it is signed (an unsigned
/// zone): the answer goes out as it is.
pub fn sign<'s>(query: &Query<'_>, ans: &Answer<'s>, snap: &'s Snapshot, signer: &mut Signer) -> Option<Signed<'s>> {
    if snap.keys.is_empty() || !matches!(ans.rcode, rcode::NOERROR | rcode::NXDOMAIN) {
        return None;
    }
    signer.use_keys(Arc::as_ptr(&snap.keys) as usize);
    signer.set_rate(snap.settings.fresh_signatures_per_second);
    let validity = Validity::now();
    let mut signed = Signed::default();
    let mut any = false;
    let sections: [(Section, &[PlacedRRset<'_>]); 3] =
        [(Section::Answer, &ans.answer), (Section::Authority, &ans.authority), (Section::Additional, &ans.additional)];
    for (section, rrs) in sections {
        let mut i = 0;
        while let Some(rr) = rrs.get(i) {
            // A GSLB answer places one RRset per chosen region: on the wire they are one
            // RRset (same owner and type), and so they are signed as one, the RRSIG after
            // the last part.
            let parts = rrs[i..].iter().take_while(|p| p.owner == rr.owner && p.rrset.rtype == rr.rrset.rtype).count();
            let last = i + parts - 1;
            let merged;
            let set = if parts == 1 {
                rr.rrset
            } else {
                merged = RRset::new(rr.rrset.rtype, rr.rrset.ttl, rrs[i..=last].iter().flat_map(|p| p.rrset.rdatas()));
                &merged
            };
            i = last + 1;
            let Some(owner) = owner_lower(rr.owner, query) else {
                continue;
            };
            let Some((zone, keys)) = signing_zone(snap, owner.as_wire(), rr.rrset.rtype) else {
                continue;
            };
            any = true;
            // Names that exist only for this query (wildcard answers, one per name asked)
            // spend the part of the budget a flood of random names may use; service names
            // are not zone nodes but are real, shared data.
            let kind = if matches!(rr.owner, Owner::Question)
                && zone.node(owner.as_wire()).is_none()
                && !snap.gslb.owns_name(owner.as_wire())
            {
                Kind::PerName
            } else {
                Kind::Positive
            };
            let ttl = rr.ttl_override.unwrap_or(rr.rrset.ttl);
            match signer.rrsig(keys, owner.as_wire(), set, ttl, validity, kind) {
                Some(sig) => signed.rrsigs.push((section, last, sig)),
                None => {
                    signed.is_refused = true;
                    return Some(signed);
                }
            }
        }
    }
    // A denial: NXDOMAIN, or NOERROR with the zone's SOA in AUTHORITY (NODATA).
    let denial = ans
        .authority
        .iter()
        .find(|rr| rr.rrset.rtype == rtype::SOA)
        .filter(|_| ans.rcode == rcode::NXDOMAIN || ans.answer.iter().all(|rr| rr.rrset.rtype == rtype::CNAME));
    if let Some(soa) = denial {
        let Owner::Name(apex) = soa.owner else {
            return any.then_some(signed);
        };
        // The name denied: the last CNAME's target after a chain, else the question. Not
        // signable (the denying zone has no keys: a chain into an unsigned zone): the
        // signatures made so far still go out.
        let name = match ans.answer.last() {
            Some(last) => last.rrset.rdatas().next().and_then(NameBuf::from_lowercase),
            None => Some(query.qname_lower.clone()),
        };
        let (Some(name), Some(keys), Some(zone)) = (name, snap.keys.zone(apex), snap.zones.get(apex)) else {
            return any.then_some(signed);
        };
        let is_nx = ans.rcode == rcode::NXDOMAIN;
        let types =
            if is_nx { SmallVec::from_slice(&[NXNAME]) } else { types_at(snap, zone, name.as_wire(), query.qtype) };
        let Some(nsec) = compact_nsec(name.as_wire(), &types, soa.rrset.ttl) else {
            return any.then_some(signed);
        };
        let at_question = name.as_wire() == query.qname_lower.as_wire();
        match signer.rrsig(keys, name.as_wire(), &nsec, nsec.ttl, validity, Kind::PerName) {
            Some(sig) => {
                signed.nsec = Some((name, nsec, sig, at_question));
                if is_nx {
                    signed.rcode = Some(rcode::NOERROR);
                }
            }
            None => signed.is_refused = true,
        }
        return Some(signed);
    }
    // A referral from a signed zone: the DS, or an NSEC proving there is none.
    if !ans.aa
        && let Some(ns) = ans.authority.first().filter(|rr| rr.rrset.rtype == rtype::NS)
        && let Owner::Name(cut) = ns.owner
        && let Some(zone) = snap.zones.find(cut)
        && let Some(keys) = snap.keys.zone(zone.apex().as_wire())
        && let Lookup::Delegation { node, .. } = zone.lookup(cut)
    {
        let cut_lower = NameBuf::from_lowercase(cut)?;
        match node.rrset(rtype::DS) {
            Some(ds) => match signer.rrsig(keys, cut_lower.as_wire(), ds, ds.ttl, validity, Kind::Positive) {
                Some(sig) => signed.ds = Some((cut, ds, sig)),
                None => signed.is_refused = true,
            },
            None => {
                let types: SmallVec<[u16; 8]> = node.rrsets().iter().map(|s| s.rtype).collect();
                let nsec = compact_nsec(cut_lower.as_wire(), &types, zone.negative_soa().ttl)?;
                match signer.rrsig(keys, cut_lower.as_wire(), &nsec, nsec.ttl, validity, Kind::Positive) {
                    Some(sig) => signed.nsec = Some((cut_lower, nsec, sig, false)),
                    None => signed.is_refused = true,
                }
            }
        }
        return Some(signed);
    }
    any.then_some(signed)
}

/// Types that exist at `name` (for a NODATA bitmap): the zone's RRsets there, A and AAAA
/// at a service name, never the type asked for.
fn types_at(snap: &Snapshot, zone: &Zone, name: &[u8], qtype: u16) -> SmallVec<[u16; 8]> {
    let mut types: SmallVec<[u16; 8]> = match zone.lookup(name) {
        Lookup::Found(node) | Lookup::Wildcard(node) => node.rrsets().iter().map(|s| s.rtype).collect(),
        Lookup::Delegation { cut, node } if cut == name => node.rrsets().iter().map(|s| s.rtype).collect(),
        _ => SmallVec::new(),
    };
    if snap.gslb.service(name).is_some() {
        types.extend([rtype::A, rtype::AAAA]);
    }
    types.retain(|t| *t != qtype && *t != rtype::CNAME);
    types
}

/// RFC 9824's NSEC at `name`: next name `\000.<name>`, the given types plus RRSIG and NSEC.
pub fn compact_nsec(name: &[u8], types: &[u16], ttl: u32) -> Option<RRset> {
    if name.len() + 2 > 255 {
        return None;
    }
    let mut rdata = Vec::with_capacity(name.len() + 2 + 40);
    rdata.extend_from_slice(&[1, 0]);
    rdata.extend_from_slice(name);
    let mut all: SmallVec<[u16; 12]> = types.iter().copied().collect();
    all.extend([rtype::RRSIG, rtype::NSEC]);
    all.sort_unstable();
    all.dedup();
    write_bitmap(&all, &mut rdata);
    Some(RRset::new(rtype::NSEC, ttl, [&rdata[..]]))
}

/// The type bit maps field (RFC 4034 section 4.1.2) of sorted, unique types.
fn write_bitmap(types: &[u16], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&first) = types.get(i) {
        let window = (first >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while let Some(&t) = types.get(i).filter(|&&t| (t >> 8) as u8 == window) {
            let low = (t & 0xFF) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
}

impl<'s> Signed<'s> {
    /// The signed answer: each RRSIG after the RRset it covers, the NSEC (and its RRSIG) at
    /// the end of AUTHORITY, the rcode of compact denial; SERVFAIL when out of budget.
    pub fn apply<'b>(&'b self, ans: Answer<'b>) -> Answer<'b>
    where
        's: 'b,
    {
        if self.is_refused {
            return Answer::rcode(rcode::SERVFAIL);
        }
        let place = |section: Section, rrs: &[PlacedRRset<'b>]| -> SmallVec<[PlacedRRset<'b>; 8]> {
            let mut out = SmallVec::new();
            for (i, rr) in rrs.iter().enumerate() {
                out.push(*rr);
                for (_, _, sig) in self.rrsigs.iter().filter(|(s, j, _)| *s == section && *j == i) {
                    out.push(PlacedRRset::new(rr.owner, sig));
                }
            }
            out
        };
        let mut authority: SmallVec<[PlacedRRset<'b>; 4]> =
            place(Section::Authority, &ans.authority).into_iter().collect();
        if let Some((cut, ds, sig)) = &self.ds {
            authority.push(PlacedRRset::new(Owner::Name(cut), ds));
            authority.push(PlacedRRset::new(Owner::Name(cut), sig));
        }
        if let Some((name, nsec, sig, at_question)) = &self.nsec {
            let owner = if *at_question { Owner::Question } else { Owner::Name(name.as_wire()) };
            authority.push(PlacedRRset::new(owner, nsec));
            authority.push(PlacedRRset::new(owner, sig));
        }
        Answer {
            rcode: self.rcode.unwrap_or(ans.rcode),
            answer: place(Section::Answer, &ans.answer).into_iter().collect(),
            additional: place(Section::Additional, &ans.additional).into_iter().collect(),
            authority,
            ..ans
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_of_compact_denial() {
        let nsec = compact_nsec(b"\x01a\x02ex\x00", &[NXNAME], 300).unwrap();
        let rd = nsec.rdatas().next().unwrap();
        // next name \000.a.ex.
        assert_eq!(&rd[..8], b"\x01\x00\x01a\x02ex\x00");
        // window 0: RRSIG (46) and NSEC (47) in octet 5; NXNAME (128) in octet 16.
        let bitmap = &rd[8..];
        assert_eq!(bitmap[0], 0);
        assert_eq!(bitmap[1], 17);
        assert_eq!(bitmap[2 + 5], 0b0000_0011);
        assert_eq!(bitmap[2 + 16], 0x80);
    }

    #[test]
    fn bitmap_spans_windows() {
        let mut out = Vec::new();
        write_bitmap(&[rtype::A, rtype::CAA], &mut out);
        assert_eq!(out, vec![0, 1, 0x40, 1, 1, 0x40]);
    }
}
