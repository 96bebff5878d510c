//! The data every query is answered from, swapped atomically as a whole.
//!
//! A reload (SIGHUP, later the admin API and the prober) builds a complete new [`Snapshot`]
//! off the query path and stores it with one atomic pointer swap. Queries in flight keep the
//! snapshot they loaded; new queries see the new one. The query path never takes a lock that
//! a reloader could hold, so a slow reload never delays an answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::gslb::Gslb;
use crate::gslb::status::Status;
use crate::load_error::{LoadError, LoadErrorKind, Location};
use crate::zone::ZoneSet;

/// Answer-shaping settings from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our EDNS UDP payload size: answers over UDP never exceed it (RFC 6891; 1232 avoids IP
    /// fragmentation, DNS flag day 2020).
    pub udp_payload: u16,
    /// Clients allowed to transfer zones (AXFR/IXFR over TCP).
    pub transfer_allow: Vec<IpNet>,
    /// Response rate limiting on UDP (`[dns.rrl]`); None: off. Each UDP worker compares it
    /// with its limiter's once per batch, so a reload changes the limits in flight.
    pub rrl: Option<Arc<crate::config::rrl::RrlConfig>>,
    /// New DNSSEC signatures per second per UDP worker (`[dnssec]`); each worker's
    /// [`Signer`](crate::dnssec::Signer) follows it at its next signed answer.
    pub fresh_signatures_per_second: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            udp_payload: 1232,
            transfer_allow: Vec::new(),
            rrl: None,
            fresh_signatures_per_second: crate::dnssec::cache::DEFAULT_RATE,
        }
    }
}

/// Everything a query is answered from. The parts change at different rates (zones and
/// services on reload, status on every health change), so each is shared and a new snapshot
/// copies pointers, not data.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The served zones; replaced on reload.
    pub zones: Arc<ZoneSet>,
    /// Answer-shaping settings; replaced on reload.
    pub settings: Arc<Settings>,
    /// Services, regions and GeoIP database; replaced on reload.
    pub gslb: Arc<Gslb>,
    /// What each region and service may answer now; replaced on every health or override change.
    pub status: Arc<Status>,
    /// Answers per (service, region), indexed like `gslb.services` and each service's regions.
    pub answer_counts: Arc<crate::metrics::AnswerCounts>,
    /// DNSSEC keys of the signed zones (empty: nothing is signed). Swapped with the zones.
    pub keys: Arc<crate::dnssec::Keys>,
}

/// The current snapshot, shared by every listener.
pub type SharedState = Arc<ArcSwap<Snapshot>>;

/// Wraps the first snapshot for the listeners, the prober and the admin API.
pub fn shared(snapshot: Snapshot) -> SharedState {
    Arc::new(ArcSwap::from_pointee(snapshot))
}

/// Where configuration and zones come from, with the command line's overrides.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The config file (`--config`); None: defaults.
    pub config: Option<std::path::PathBuf>,
    /// The zones directory (`--zones`), replacing the config's.
    pub zones: Option<std::path::PathBuf>,
    /// DNS listen addresses (`--listen`), replacing the config's when not empty.
    pub listen: Vec<std::net::SocketAddr>,
    /// The admin API's address (`--admin-listen`), replacing the config's.
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The state directory (`--state-dir`), replacing the config's.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Loads and validates config, zones, GeoIP database and services together: either all of it
/// is good and a complete snapshot comes back, or every error found, each with its place
/// (rendered `path:line:col: error: ...` by `Display`).
pub fn load(source: &Source) -> Result<(crate::config::Config, Snapshot), Vec<LoadError>> {
    let mut cfg = match &source.config {
        Some(path) => crate::config::load(path)?,
        None => crate::config::Config::default(),
    };
    if let Some(dir) = &source.zones {
        cfg.zones_dir = dir.clone();
    }
    if !source.listen.is_empty() {
        cfg.dns.listen = source.listen.clone();
    }
    if source.admin_listen.is_some() {
        cfg.admin.listen = source.admin_listen;
    }
    if let Some(dir) = &source.state_dir {
        cfg.admin.state_dir = dir.clone();
    }
    let mut zones = ZoneSet::load_dir(&cfg.zones_dir)
        .map_err(|errors| errors.into_iter().map(LoadError::from).collect::<Vec<_>>())?;
    if zones.is_empty() {
        return Err(vec![LoadError { location: Location::file(&cfg.zones_dir), kind: LoadErrorKind::NoZones }]);
    }
    let keys = match &cfg.dnssec_key_dir {
        Some(dir) => crate::dnssec::load_keys(dir, &zones)?,
        None => crate::dnssec::Keys::default(),
    };
    // The DNSKEY RRset is zone data: published at the apex, answered like any other RRset.
    for apex in keys.apexes() {
        if let Some(zk) = keys.zone(apex.as_wire()) {
            zones.publish_apex(apex.as_wire(), zk.dnskey.clone());
        }
    }
    let geo = match &cfg.gslb.geoip {
        Some(path) => Some(crate::geoip::open(path).map_err(|e| vec![LoadError::from(e)])?),
        None => None,
    };
    let config_file = cfg.path.clone().unwrap_or_default();
    let gslb = Gslb::build(&cfg.gslb, &zones, geo, &config_file)?;
    let status = Status::initial(&gslb);
    let snapshot = Snapshot {
        zones: Arc::new(zones),
        settings: Arc::new(Settings {
            udp_payload: cfg.dns.udp_payload,
            transfer_allow: cfg.dns.transfer_allow.clone(),
            rrl: cfg.dns.rrl.clone().map(Arc::new),
            fresh_signatures_per_second: cfg.dnssec_fresh_rate,
        }),
        answer_counts: Arc::new(answer_counts(&gslb)),
        gslb: Arc::new(gslb),
        status: Arc::new(status),
        keys: Arc::new(keys),
    };
    Ok((cfg, snapshot))
}

/// The answer counters for `gslb`'s services, by name.
pub fn answer_counts(gslb: &Gslb) -> crate::metrics::AnswerCounts {
    crate::metrics::AnswerCounts::new(
        gslb.services
            .iter()
            .map(|s| (s.name.to_string(), s.regions.iter().map(|&r| gslb.regions[r as usize].name.as_str()).collect())),
    )
}
