//! A lookup is on the query path: it must not allocate.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;

use gslbd::geoip::{GeoLookup, MmdbGeo};

/// Counts the allocations of the thread that asks, so the test harness's own threads do not
/// disturb the count.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn locate_does_not_allocate() {
    let geo = MmdbGeo::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/test-city.mmdb")).unwrap();
    let addrs: Vec<IpAddr> =
        ["81.2.69.10", "::ffff:175.16.199.1", "2001:db8:ab::1", "8.8.8.8"].iter().map(|s| s.parse().unwrap()).collect();
    let before = ALLOCATIONS.with(Cell::get);
    let mut found = 0;
    for &ip in &addrs {
        found += usize::from(geo.locate(ip).is_some());
    }
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(found, 3);
    assert_eq!(after - before, 0, "allocations during {} lookups", addrs.len());
}
