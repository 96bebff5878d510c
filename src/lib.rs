//! gslbd: an authoritative DNS server that steers clients to healthy regional balancers.
//!
//! ```text
//! frontend -> wire::decode -Query-> resolve::answer(&Snapshot) -Answer-> wire::encode -> frontend
//!                                        |  service name? policy chain over healthy regions
//! prober -ProbeOutcome-> health (rise/fall) -HealthTable-> control ─┐
//! admin API -> overrides (weight, drain, force; saved, audited) -> control ├─> new Snapshot
//! SIGHUP / POST /v1/reload -> snapshot::load (config, zones, GeoIP) -> control ┘   (arc-swap)
//! ```
//!
//! - [`name`]: domain names in wire form. [`rtype`]: record type numbers.
//! - [`zone`]: zone files -> immutable zone index.
//! - [`wire`]: packets <-> [`wire::Query`] / [`resolve::Answer`], the protocol gates.
//! - [`resolve`]: the authoritative answer algorithm, pure; services answered via [`policy`].
//! - [`gslb`]: services and regions; [`gslb::status`]: what each service may answer now.
//! - [`policy`]: the steering steps (geo, nearest, latency, weighted, failover, ...).
//! - [`geoip`]: MaxMind lookups and the `.mmdb` builder.
//! - [`health`]: probes, rise/fall (and the window rule), the prober, verdicts saved for
//!   restarts. [`overrides`]: operator overrides on disk.
//! - [`control`]: where health, overrides and reloads become a new snapshot.
//! - [`snapshot`]: the [`snapshot::Snapshot`] every query reads, and loading it.
//! - [`frontend`]: UDP and TCP sockets, UDP response rate limiting ([`frontend::rrl`]). [`admin`], [`explain`], [`metrics`]: the admin API.
pub mod addr;
pub mod admin;
pub mod answer;
pub mod config;
pub mod control;
pub mod diag;
pub mod explain;
pub mod frontend;
pub mod geoip;
pub mod gslb;
pub mod health;
pub mod metrics;
pub mod name;
pub mod overrides;
pub mod policy;
pub mod region;
pub mod resolve;
pub mod rtype;
pub mod server;
pub mod shutdown;
pub mod snapshot;
#[cfg(test)]
mod testutil;
pub mod wire;
pub mod zone;
