//! gslbd: an authoritative DNS server that steers clients to healthy regional balancers.
//!
//! ```text
//! frontend -> wire::decode -Query-> resolve::answer(&Snapshot) -Answer-> wire::encode -> frontend
//! config + zone files -> Snapshot (state), swapped atomically on reload
//! client address -> geoip::GeoLookup::locate -> Location (for the geo policies)
//! prober -ProbeOutcome-> health (rise/fall) -HealthTable-> control::rebuild -> new Snapshot
//! ```
//!
//! - [`name`]: domain names in wire form.
//! - [`zone`]: zone files -> immutable zone index.
//! - [`wire`]: packets <-> [`wire::Query`] / [`resolve::Answer`], the protocol gates.
//! - [`resolve`]: the authoritative answer algorithm, pure.
//! - [`geoip`]: where a client is, from a MaxMind DB; `gslbd geoip build` writes one.
//! - [`state`]: the [`state::Snapshot`] every query reads.
//! - [`health`]: probes, the rise/fall machine and the prober tasks -> [`health::HealthTable`].
//! - [`control`]: health (later: operator overrides) -> region status -> new snapshot.

pub mod admin;
pub mod config;
pub mod control;
pub mod explain;
pub mod frontend;
pub mod geoip;
pub mod gslb;
pub mod health;
pub mod metrics;
pub mod name;
pub mod overrides;
pub mod policy;
pub mod resolve;
pub mod rtype;
pub mod state;
pub mod wire;
pub mod zone;
