//! (Query, &Snapshot) -> Answer: the authoritative lookup algorithm of RFC 1034 section
//! 4.3.2, with RFC 4592 wildcards, RFC 6604 CNAME chains, RFC 2308 negative answers and RFC
//! 8482 minimal ANY. Pure: no I/O, no locks, no allocation for answers of ordinary size; the
//! answer borrows the RRsets of the snapshot and the encoder writes them.

use std::net::IpAddr;
use std::sync::LazyLock;

use crate::answer::{Answer, Owner, PlacedRRset, rcode};
use crate::rtype;
use crate::snapshot::Snapshot;
use crate::wire::{NameBuf, Query};
use crate::zone::store::{Lookup, Node, RRset, Zone};

pub mod dnssec;
mod transfer;
pub use transfer::transfer;

/// Most CNAMEs followed for one answer (loops end here too).
const MAX_CNAME_CHAIN: usize = 12;

/// HINFO "RFC8482" "" (RFC 8482 section 4.2), for ANY at a name with nothing better to show.
static HINFO_RFC8482: LazyLock<RRset> = LazyLock::new(|| RRset::new(rtype::HINFO, 3600, [&b"\x07RFC8482\x00"[..]]));

/// Answers `query` from `snap` for a query that came from `source` (the packet's sender).
/// Zone transfers are not answered here (see [`transfer()`]).
pub fn answer<'a>(query: &'a Query<'a>, source: IpAddr, snap: &'a Snapshot) -> Answer<'a> {
    if query.qclass != rtype::CLASS_IN && query.qclass != rtype::CLASS_ANY {
        return Answer::rcode(rcode::REFUSED);
    }
    let qname = query.qname_lower.as_wire();
    let Some(mut zone) = snap.zones.find(qname) else {
        return Answer::rcode(rcode::REFUSED);
    };
    // DS lives on the parent side of a cut (RFC 4035 section 3.1.4.1): at the apex of a
    // served child, answer from the served parent if there is one.
    if query.qtype == rtype::DS
        && zone.apex().as_wire() == qname
        && let Some(parent) = snap.zones.find_parent(zone)
    {
        zone = parent;
    }
    let mut ans = Answer { aa: true, ..Default::default() };
    let qtype = query.qtype;
    let mut owner = Owner::Question;
    let mut name = query.qname_lower.clone();
    let mut chain = 0;
    loop {
        // A service answers the address types at its name; other types (an apex's SOA, NS,
        // MX, TXT) come from the zone's static records.
        let service = snap.gslb.service(name.as_wire()).filter(|_| match qtype {
            rtype::A | rtype::AAAA | rtype::CNAME | rtype::ANY => true,
            // Other types come from the zone's records at that name when it has them (an
            // apex's SOA and NS); else the service answers (NODATA, or its region's CNAME).
            _ => !matches!(zone.lookup(name.as_wire()), Lookup::Found(node) if node.rrset(qtype).is_some()),
        });
        if let Some((index, service)) = service {
            match service_answer(&mut ans, zone, index, service, owner, qtype, query, source, snap) {
                Followed::Done => return ans,
                Followed::Cname => {}
            }
        } else {
            match zone.lookup(name.as_wire()) {
                Lookup::Found(node) => {
                    if node_answer(&mut ans, zone, node, owner, qtype) {
                        return ans;
                    }
                }
                Lookup::NxDomain | Lookup::Wildcard(_) if snap.gslb.owns_name(name.as_wire()) => {
                    // A service's name or one of its ancestors exists: other types are NODATA
                    // (RFC 8020), and a wildcard never covers an existing name (RFC 4592).
                    negative(&mut ans, zone, rcode::NOERROR);
                    return ans;
                }
                Lookup::Wildcard(_) if service_encloses(snap, zone, name.as_wire()) => {
                    negative(&mut ans, zone, rcode::NXDOMAIN);
                    return ans;
                }
                Lookup::Wildcard(node) => {
                    // Synthesized records carry the name asked for (RFC 4592 section 3.3.1).
                    if node_answer(&mut ans, zone, node, owner, qtype) {
                        return ans;
                    }
                }
                Lookup::Delegation { cut, node } => {
                    if qtype == rtype::DS && cut == name.as_wire() && chain == 0 {
                        // The parent is authoritative for DS at the cut.
                        match node.rrset(rtype::DS) {
                            Some(ds) => ans.answer.push(PlacedRRset::new(owner, ds)),
                            None => negative(&mut ans, zone, rcode::NOERROR),
                        }
                        return ans;
                    }
                    referral(&mut ans, zone, cut, node, chain == 0);
                    return ans;
                }
                Lookup::NxDomain => {
                    negative(&mut ans, zone, rcode::NXDOMAIN);
                    return ans;
                }
            }
        }
        // The node had a CNAME and the question was for another type: follow it, while the
        // target stays in a served zone and the chain neither loops nor grows too long.
        let Some((last, earlier)) = ans.answer.split_last() else {
            return ans;
        };
        let cname = last.rrset;
        chain += 1;
        if earlier.iter().any(|rr| std::ptr::eq(rr.rrset, cname)) {
            // A loop: every link has been given once; the resolver sees the loop itself.
            ans.answer.pop();
            return ans;
        }
        if chain > MAX_CNAME_CHAIN {
            return ans;
        }
        let Some(target) = cname.rdatas().next() else {
            return ans;
        };
        let Some(lower) = NameBuf::from_lowercase(target) else {
            return ans;
        };
        let Some(next) = snap.zones.find(lower.as_wire()) else {
            // Target outside every served zone: the resolver follows it.
            return ans;
        };
        zone = next;
        name = lower;
        owner = Owner::Name(target);
    }
}

/// Fills in the answer for an existing node. Returns false when the node holds a CNAME the
/// caller must follow.
fn node_answer<'a>(ans: &mut Answer<'a>, zone: &'a Zone, node: &'a Node, owner: Owner<'a>, qtype: u16) -> bool {
    if qtype == rtype::ANY {
        // RFC 8482: one RRset is enough; the address records are the most useful.
        let pick = node
            .rrset(rtype::A)
            .or_else(|| node.rrset(rtype::AAAA))
            .or_else(|| node.rrsets().iter().find(|s| !matches!(s.rtype, rtype::RRSIG | rtype::NSEC | rtype::NSEC3)));
        match pick {
            Some(set) => ans.answer.push(PlacedRRset::new(owner, set)),
            None if ans.answer.is_empty() && node.is_empty_non_terminal() => negative(ans, zone, rcode::NOERROR),
            None => ans.answer.push(PlacedRRset::new(owner, &HINFO_RFC8482)),
        }
        return true;
    }
    if let Some(set) = node.rrset(qtype) {
        ans.answer.push(PlacedRRset::new(owner, set));
        additional(ans, zone, set);
        return true;
    }
    if let Some(cname) = node.rrset(rtype::CNAME) {
        ans.answer.push(PlacedRRset::new(owner, cname));
        return false;
    }
    negative(ans, zone, rcode::NOERROR);
    true
}

/// For a name the zone would answer from a wildcard: whether a service's name, or an
/// ancestor of one, lies between the name and the wildcard's static closest encloser. That
/// name is then the closest encloser, it has no wildcard child, and the answer is NXDOMAIN
/// (RFC 4592 section 3.3.1). Only on the wildcard path.
fn service_encloses(snap: &Snapshot, zone: &Zone, name: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&len) = name.get(at).filter(|&&l| l > 0) {
        at += 1 + usize::from(len);
        let ancestor = &name[at..];
        if matches!(zone.lookup(ancestor), Lookup::Found(_)) {
            return false;
        }
        if snap.gslb.owns_name(ancestor) {
            return true;
        }
    }
    false
}

/// NXDOMAIN or NODATA: the zone's SOA in AUTHORITY with the negative TTL. After a CNAME the
/// rcode describes the last name of the chain (RFC 6604 section 2.1).
fn negative<'a>(ans: &mut Answer<'a>, zone: &'a Zone, rc: u16) {
    ans.rcode = rc;
    ans.authority.push(PlacedRRset::new(Owner::Name(zone.apex().as_wire()), zone.negative_soa()));
}

/// A referral to the child zone at `cut`: NS in AUTHORITY, AA clear (RFC 1034 section
/// 4.3.2 step 3b), glue for the in-zone name servers in ADDITIONAL.
fn referral<'a>(ans: &mut Answer<'a>, zone: &'a Zone, cut: &'a [u8], node: &'a Node, first: bool) {
    let Some(ns) = node.rrset(rtype::NS) else {
        return;
    };
    if first {
        ans.aa = false;
    }
    ans.authority.push(PlacedRRset::new(Owner::Name(cut), ns));
    ans.glue_required = true;
    for target in ns.rdatas() {
        add_addresses(ans, zone, target);
    }
}

/// Additional-section processing (RFC 1035 section 3.3): addresses of the names NS, MX and
/// SRV records point at, when this zone has them.
fn additional<'a>(ans: &mut Answer<'a>, zone: &'a Zone, set: &'a RRset) {
    let skip = match set.rtype {
        rtype::NS => 0,
        rtype::MX => 2,
        rtype::SRV => 6,
        _ => return,
    };
    for rd in set.rdatas() {
        if let Some(target) = rd.get(skip..) {
            add_addresses(ans, zone, target);
        }
    }
}

fn add_addresses<'a>(ans: &mut Answer<'a>, zone: &'a Zone, target: &[u8]) {
    let mut key = [0u8; 255];
    let Some(dst) = key.get_mut(..target.len()) else {
        return;
    };
    for (d, s) in dst.iter_mut().zip(target) {
        *d = s.to_ascii_lowercase();
    }
    let key = &key[..target.len()];
    if !crate::name::is_subdomain(key, zone.apex().as_wire()) {
        return;
    }
    let Some((owner, node)) = zone.node_entry(key) else {
        return;
    };
    for t in [rtype::A, rtype::AAAA] {
        if let Some(set) = node.rrset(t)
            && !ans.additional.iter().any(|rr| std::ptr::eq(rr.rrset, set))
        {
            ans.additional.push(PlacedRRset::new(Owner::Name(owner), set));
        }
    }
}

/// Whether a service answer is complete or ended in a CNAME to follow.
enum Followed {
    Done,
    Cname,
}

/// The address a GSLB answer is chosen for: the EDNS Client Subnet address when the query
/// has one with a non-zero prefix (RFC 7871 section 7.1.2: SOURCE 0 means "do not use my
/// address"), else the packet's sender, IPv4-mapped IPv6 taken as IPv4.
pub fn client_address(query: &Query<'_>, source: IpAddr) -> IpAddr {
    let ecs = query.edns.as_ref().and_then(|e| e.client_subnet).filter(|cs| cs.source_prefix > 0);
    crate::addr::canonical(ecs.map_or(source, |cs| cs.addr))
}

/// Answers a query at a service name: A/AAAA (and ANY) from the regions its policy picks
/// among the healthy ones; when the first pick is a hostname region, its CNAME, whatever the
/// type (followed unless the type is CNAME or ANY), as a zone's CNAME would be; other types
/// get NODATA.
#[allow(clippy::too_many_arguments)]
fn service_answer<'a>(
    ans: &mut Answer<'a>,
    zone: &'a Zone,
    index: usize,
    service: &'a crate::gslb::Service,
    owner: Owner<'a>,
    qtype: u16,
    query: &Query<'_>,
    source: IpAddr,
    snap: &'a Snapshot,
) -> Followed {
    let Some(status) = snap.status.services.get(index) else {
        ans.rcode = rcode::SERVFAIL;
        return Followed::Done;
    };
    let family = status.family(qtype, service);
    let is_address = matches!(qtype, rtype::A | rtype::AAAA | rtype::ANY);
    // Records this service adds; an answer that adds none is NODATA, even after a CNAME
    // that led here (RFC 2308 section 2.2: the SOA lets the resolver cache the denial).
    let start = ans.answer.len();
    if status.mode == crate::gslb::status::Mode::AllDown {
        use crate::config::gslb::AllDown;
        let fallback = if family == rtype::AAAA { service.fallback_aaaa.as_ref() } else { service.fallback_a.as_ref() };
        match (service.when_all_down, fallback) {
            (AllDown::Fallback, Some(set)) if is_address => {
                ans.answer.push(PlacedRRset { owner, rrset: set, ttl_override: Some(status.ttl) })
            }
            (AllDown::Servfail, _) => {
                ans.rcode = rcode::SERVFAIL;
                ans.aa = false;
            }
            _ => negative(ans, zone, rcode::NOERROR),
        }
        return Followed::Done;
    }
    let mut ctx = crate::policy::Ctx {
        regions: &snap.gslb.regions,
        status: &snap.status.regions,
        rechosen: status.rechosen,
        client: crate::policy::Client::new(client_address(query, source), snap.gslb.geo.as_deref()),
        shed: None,
    };
    let chosen = crate::policy::select(&service.chain, status.candidates(family), &mut ctx);
    ans.service = Some((index, chosen.clone()));
    if service.is_client_dependent
        && let Some(cs) = query.edns.as_ref().and_then(|e| e.client_subnet)
    {
        ans.ecs_scope = cs.source_prefix;
    }
    let regions = &snap.gslb.regions;
    // A CNAME must stand alone at its name: if the first choice is a hostname, answer it.
    if let Some(cname) = chosen.first().and_then(|&r| regions[r as usize].cname.as_ref()) {
        ans.answer.push(PlacedRRset { owner, rrset: cname, ttl_override: Some(status.ttl) });
        return if qtype == rtype::CNAME || qtype == rtype::ANY { Followed::Done } else { Followed::Cname };
    }
    if !is_address {
        // CNAME, MX, TXT ... at a name whose regions have addresses: NODATA.
        negative(ans, zone, rcode::NOERROR);
        return Followed::Done;
    }
    for &r in &chosen {
        let set =
            if family == rtype::AAAA { regions[r as usize].aaaa.as_ref() } else { regions[r as usize].a.as_ref() };
        if let Some(set) = set {
            ans.answer.push(PlacedRRset { owner, rrset: set, ttl_override: Some(status.ttl) });
        }
    }
    if ans.answer.len() == start {
        // No region has an address of this family: NODATA, never an empty NOERROR without SOA.
        negative(ans, zone, rcode::NOERROR);
    }
    Followed::Done
}

#[cfg(test)]
mod tests;
