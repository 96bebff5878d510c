//! The data every query is answered from, swapped atomically as a whole.
//!
//! A reload (SIGHUP, later the admin API and the prober) builds a complete new [`Snapshot`]
//! off the query path and stores it with one atomic pointer swap. Queries in flight keep the
//! snapshot they loaded; new queries see the new one. The query path never takes a lock that
//! a reloader could hold, so a slow reload never delays an answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::zone::ZoneSet;

/// Answer-shaping settings from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our EDNS UDP payload size: answers over UDP never exceed it (RFC 6891; 1232 avoids IP
    /// fragmentation, DNS flag day 2020).
    pub udp_payload: u16,
    /// Clients allowed to transfer zones (AXFR/IXFR over TCP).
    pub transfer_allow: Vec<IpNet>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            udp_payload: 1232,
            transfer_allow: Vec::new(),
        }
    }
}

/// Everything a query is answered from.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub zones: ZoneSet,
    pub settings: Settings,
}

/// The current snapshot, shared by every listener.
pub type SharedState = Arc<ArcSwap<Snapshot>>;

pub fn shared(snapshot: Snapshot) -> SharedState {
    Arc::new(ArcSwap::from_pointee(snapshot))
}
