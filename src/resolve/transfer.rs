//! Which records a full zone transfer (AXFR, RFC 5936) carries, in which order: the SOA
//! first, every other RRset, the SOA again last. Answer logic, beside the lookup (as Knot's
//! `nameserver/axfr.c`); `wire::encode_transfer` only splits them into messages.

use crate::answer::{Owner, PlacedRRset};
use crate::rtype;
use crate::zone::store::Zone;

/// The records of `zone`'s transfer, in order.
pub fn transfer(zone: &Zone) -> Vec<PlacedRRset<'_>> {
    let apex = zone.apex().as_wire();
    let mut rrs = vec![PlacedRRset::new(Owner::Name(apex), zone.soa())];
    for (owner, node) in zone.iter() {
        for set in node.rrsets() {
            if !(set.rtype == rtype::SOA && owner == apex) {
                rrs.push(PlacedRRset::new(Owner::Name(owner), set));
            }
        }
    }
    rrs.push(PlacedRRset::new(Owner::Name(apex), zone.soa()));
    rrs
}
