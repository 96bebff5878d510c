//! The regions services steer to, as the policies read them: what is configured (address
//! records, coordinates, priority, weight, bias) and what holds now ([`RegionStatus`]).
//! Below `policy` and `gslb`, so a policy reads regions without importing the service model.

use crate::rtype;
use crate::zone::store::RRset;

/// Index of a region in `Gslb::regions` (and `Status::regions`).
pub type RegionId = u16;

/// One regional balancer, with its answers pre-encoded (TTL comes from the service).
#[derive(Debug)]
pub struct Region {
    /// The region's name, the key of `[regions.NAME]`.
    pub name: String,
    /// Its IPv4 addresses as an A RRset; None when it has none.
    pub a: Option<RRset>,
    /// Its IPv6 addresses as an AAAA RRset; None when it has none.
    pub aaaa: Option<RRset>,
    /// Its hostname as a CNAME RRset, answered instead of addresses (for A and AAAA alike).
    pub cname: Option<RRset>,
    /// Latitude and longitude in degrees, for the nearest policy.
    pub coordinates: Option<(f64, f64)>,
    /// Configured weight, for the weighted and sticky policies (operators may override it).
    pub weight: u32,
    /// Priority for the failover policy; lower is preferred.
    pub priority: u32,
    /// Kilometres subtracted from its distance by the nearest policy.
    pub bias_km: f64,
    /// Requests or sessions it can take (`capacity`), if configured.
    pub capacity: Option<f64>,
}

impl Region {
    /// The records answering `qtype` (A or AAAA) for this region, if it has any: its
    /// addresses of that family, or its CNAME, which serves both.
    pub fn answers(&self, qtype: u16) -> Option<&RRset> {
        self.cname.as_ref().or(match qtype {
            rtype::A => self.a.as_ref(),
            rtype::AAAA => self.aaaa.as_ref(),
            _ => None,
        })
    }
}

/// The effective state of one region: health after overrides, weight after overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionStatus {
    /// Whether policies may choose it: healthy (or unknown, per `[health] unknown`), or forced up.
    pub is_up: bool,
    /// `is_up` comes from the operator's force, not from the prober. Fail-open exists for
    /// health verdicts that may be wrong; it never answers a region forced down.
    pub is_forced: bool,
    /// Weight after the operator's weight or drain; 0 = drained.
    pub weight: u32,
    /// Smoothed RTT of health probes, milliseconds.
    pub rtt_ms: Option<f64>,
    /// How full its balancer says it is (`crate::load`: smoothed, release-limited), 1 = at
    /// capacity; None: unknown (no source, or no recent good reading), which load steps
    /// treat as neither empty nor full.
    pub utilisation: Option<f64>,
}
