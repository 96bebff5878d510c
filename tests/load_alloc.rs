//! The load steps are on the query path: deciding with them must not allocate (nor lock:
//! they read the snapshot's status only).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use gslbd::gslb::Gslb;
use gslbd::gslb::status::Status;
use gslbd::policy::{Client, Ctx, select};
use gslbd::snapshot::{Source, load};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

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
        let before = counting_alloc::allocations();
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
        let allocations = counting_alloc::allocations() - before;
        assert_eq!(answered, 10_000, "{name}: one region per decision");
        assert_eq!(allocations, 0, "{name}: {allocations} allocations in 10,000 decisions");
    }
}
