//! The load steps are on the query path: deciding with them must not allocate (nor lock:
//! they read the snapshot's status only).
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use gslbd::gslb::Gslb;
use gslbd::gslb::status::Status;
use gslbd::policy::{Client, Ctx, select};
use gslbd::snapshot::{Source, load};

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
fn shed_and_least_loaded_decide_without_allocating() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gslb/gslbd.toml");
    let (_, snap) = load(&Source { config: Some(path.clone()), ..Default::default() }).unwrap();
    let text = std::fs::read_to_string(&path).unwrap()
        + "[regions.us-east.load]\ntype = \"json\"\nurl = \"http://127.0.0.1:9/\"\npointer = \"/u\"\n\
           [services.\"shed.svc.test\"]\nregions = [\"us-east\", \"eu-west\", \"ap-south\"]\npolicy = [\"shed\", \"weighted\"]\n\
           [services.\"least.svc.test\"]\nregions = [\"us-east\", \"eu-west\", \"ap-south\"]\npolicy = [\"least-loaded\", \"weighted\"]\nleast-loaded = { margin = 0.5 }\n";
    let cfg = gslbd::config::parse(&text, &path).unwrap();
    let gslb = Gslb::build(&cfg.gslb, &snap.zones, None, &path).unwrap();
    let mut regions = Status::initial(&gslb).regions;
    for (name, u) in [("us-east", 0.5), ("eu-west", 0.8), ("ap-south", 0.95)] {
        regions[gslb.region_id(name).unwrap() as usize].utilisation = Some(u);
    }
    let status = Status::build(&gslb, regions, None);
    let client = "192.0.2.1".parse().unwrap();
    for name in ["shed.svc.test.", "least.svc.test."] {
        let lower = gslbd::name::Name::parse(name, None).unwrap();
        let (index, service) = gslb.service(lower.as_wire()).unwrap();
        let st = &status.services[index];
        let before = ALLOCATIONS.with(Cell::get);
        let mut answered = 0;
        for _ in 0..10_000 {
            let mut ctx = Ctx {
                regions: &gslb.regions,
                status: &status.regions,
                rechosen: None,
                client: Client::new(client, None),
                shed: None,
            };
            answered += select(&service.chain, st.candidates(gslbd::rtype::A), &mut ctx).len();
        }
        let allocations = ALLOCATIONS.with(Cell::get) - before;
        assert_eq!(answered, 10_000, "{name}: one region per decision");
        assert_eq!(allocations, 0, "{name}: {allocations} allocations in 10,000 decisions");
    }
}
