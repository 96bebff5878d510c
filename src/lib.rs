//! gslbd: an authoritative DNS server that steers clients to healthy regional balancers.
//!
//! ```text
//! frontend -> wire::decode -Query-> resolve::answer(&Snapshot) -Answer-> wire::encode -> frontend
//!                                        |  service name? policy chain over healthy regions
//! prober -ProbeOutcome-> health (rise/fall) -HealthTable-> control ─┐
//! admin API -> overrides (weight, drain, force; saved, audited) -> control ├─> new Snapshot
//! SIGHUP / POST /v1/reload -> snapshot::load (config, zones, GeoIP) -> control ┘   (arc-swap)
//! [cluster] etcd -watch-> cluster (overrides, members, observations) -> control ┘
//! ```
//!
//! Modules, bottom layer first; each imports only its own layer or lower ones
//! (`tests/architecture.rs` checks it; `docs/design.md` says why each boundary is there):
//!
//! - vocabulary: [`rtype`] record type numbers, [`name`] domain names in wire form,
//!   [`addr`] client addresses, [`diag`] config error reporting, [`load_error`] what can be
//!   wrong at load, with where; [`shutdown`] the one stop signal; [`events`] the feed of
//!   health, mode and override changes.
//! - data: [`zone`] zone files -> immutable zone index; [`geoip`] MaxMind lookups and the
//!   `.mmdb` builder; [`region`] the regions policies read; [`answer`] the [`answer::Answer`]
//!   value between lookup and encoder; [`dnssec`] signing keys, RRSIGs and the per-worker
//!   signature cache.
//! - [`metrics`]: counters with plain labels, Prometheus text.
//! - [`policy`]: the steering policies, one file each, and the [`policy::Chain`] of a service.
//! - [`config`]: TOML -> validated configuration, errors with `file:line:col`.
//! - model: [`gslb`] services ([`gslb::status`]: what each may answer now); [`health`]
//!   probes, rise/fall (and the window rule), the prober, verdicts saved for restarts;
//!   [`overrides`] operator overrides on disk.
//! - [`snapshot`]: the [`snapshot::Snapshot`] every query reads, and loading it.
//! - [`wire`]: packets <-> [`wire::Query`] / [`answer::Answer`], the protocol gates.
//! - [`resolve`]: the authoritative answer algorithm and zone transfer contents, pure, and
//!   which RRsets of an answer DO=1 queries get signed, with compact denial;
//!   [`explain`]: the same, traced, for the admin API.
//! - [`cluster`]: cluster mode (`[cluster]`): the etcd client, overrides shared through
//!   etcd, membership by lease.
//! - [`frontend`]: UDP and TCP sockets, UDP response rate limiting ([`frontend::rrl`]);
//!   [`control`]: where health, overrides and reloads become a new snapshot; [`admin`]: the
//!   admin API and its status [`page`]; [`notify`]: webhooks for the [`events`] feed.
//! - [`server`]: starts everything and stops it on one [`shutdown::Shutdown`]; [`ctl`]: the
//!   admin API's client (`gslbd ctl`).
pub mod addr;
pub mod admin;
pub mod answer;
pub mod cluster;
pub mod config;
pub mod control;
pub mod ctl;
pub mod diag;
pub mod dnssec;
pub mod events;
pub mod explain;
pub mod frontend;
pub mod geoip;
pub mod gslb;
pub mod health;
pub mod load;
pub mod load_error;
pub mod metrics;
pub mod name;
pub mod notify;
pub mod overrides;
pub mod page;
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
