//! A lookup is on the query path: it must not allocate.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;

use gslbd::geoip::{GeoLookup, MmdbGeo};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn locate_does_not_allocate() {
    let geo = MmdbGeo::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-city.mmdb")).unwrap();
    let addrs: Vec<IpAddr> =
        ["81.2.69.10", "::ffff:175.16.199.1", "2001:db8:ab::1", "8.8.8.8"].iter().map(|s| s.parse().unwrap()).collect();
    let before = counting_alloc::allocations();
    let mut found = 0;
    for &ip in &addrs {
        found += usize::from(geo.locate(ip).is_some());
    }
    let after = counting_alloc::allocations();
    assert_eq!(found, 3);
    assert_eq!(after - before, 0, "allocations during {} lookups", addrs.len());
}
