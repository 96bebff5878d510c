//! Steering policies. A service's policy is a chain of steps; each step narrows the list of
//! candidate regions (healthy ones, prepared by `gslb::status`) for this client, and the
//! list left after the last step is the answer. A step that would leave nothing (no map
//! entry for the client, every mapped region down) leaves the list as it was, so the next
//! step — or the answer — still has healthy regions: `geo -> nearest` sends a client whose
//! mapped region is down to the nearest healthy one.
//!
//! Steps are built once per configuration and are pure functions of (candidates, client,
//! status); the only per-query state is a thread-local random number generator.

pub mod geo;
pub mod latency;
pub mod nearest;
pub mod pick;
pub mod sticky;

use std::net::IpAddr;

use crate::config::gslb::{PolicyConfig, RegionConfig};
use crate::geoip::{GeoLookup, Location};
use crate::gslb::status::{Candidates, ServiceStatus, Status};
use crate::gslb::{Gslb, RegionId, Service};

/// One step of a policy chain.
#[derive(Debug)]
pub enum Step {
    Geo(geo::Geo),
    Nearest(nearest::Nearest),
    Latency(latency::Latency),
    Weighted,
    Failover { weighted_ties: bool },
    MultiValue { count: usize },
    Sticky(sticky::Sticky),
}

impl Step {
    pub fn build(cfg: &PolicyConfig, regions: &[RegionConfig]) -> Step {
        let ids = |v: &[usize]| v.iter().map(|&i| i as RegionId).collect::<Vec<_>>();
        match cfg {
            PolicyConfig::Geo(g) => Step::Geo(geo::Geo::build(g)),
            PolicyConfig::Nearest { default } => Step::Nearest(nearest::Nearest { default: ids(default) }),
            PolicyConfig::Latency { margin_percent, margin_ms } => {
                Step::Latency(latency::Latency { margin_percent: *margin_percent, margin_ms: *margin_ms })
            }
            PolicyConfig::Weighted => Step::Weighted,
            PolicyConfig::Failover { weighted_ties } => Step::Failover { weighted_ties: *weighted_ties },
            PolicyConfig::MultiValue { count } => Step::MultiValue { count: *count },
            PolicyConfig::Sticky { ipv4_prefix, ipv6_prefix } => {
                Step::Sticky(sticky::Sticky::build(*ipv4_prefix, *ipv6_prefix, regions))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Geo(_) => "geo",
            Step::Nearest(_) => "nearest",
            Step::Latency(_) => "latency",
            Step::Weighted => "weighted",
            Step::Failover { .. } => "failover",
            Step::MultiValue { .. } => "multivalue",
            Step::Sticky(_) => "sticky",
        }
    }

    /// Whether the step's choice depends on the client's address (and so the answer's ECS
    /// scope must be the client's prefix).
    pub fn is_client_dependent(&self) -> bool {
        matches!(self, Step::Geo(_) | Step::Nearest(_) | Step::Sticky(_))
    }

    /// Narrows `cands` (never to empty).
    pub fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        if cands.len() <= 1 {
            return;
        }
        match self {
            Step::Geo(g) => g.apply(ctx, cands),
            Step::Nearest(n) => n.apply(ctx, cands),
            Step::Latency(_) => latency::apply(ctx, cands),
            Step::Weighted => pick::weighted(ctx, cands),
            Step::Failover { weighted_ties } => pick::failover(ctx, cands, *weighted_ties),
            Step::MultiValue { count } => pick::multivalue(cands, *count),
            Step::Sticky(s) => s.apply(ctx, cands),
        }
    }
}

/// Everything a step may read for one query.
pub struct Ctx<'a> {
    pub gslb: &'a Gslb,
    pub service: &'a Service,
    pub service_status: &'a ServiceStatus,
    pub status: &'a Status,
    pub client: Client<'a>,
}

impl Ctx<'_> {
    pub fn weight(&self, r: RegionId) -> u32 {
        self.status.regions.get(r as usize).map_or(0, |s| s.weight)
    }
}

/// The client a query is answered for: the ECS address when the query has one, else the
/// packet's source. Its location is looked up at most once, and only if a step asks.
pub struct Client<'g> {
    pub addr: IpAddr,
    geo: Option<&'g dyn GeoLookup>,
    location: Option<Option<Location>>,
}

impl<'g> Client<'g> {
    pub fn new(addr: IpAddr, geo: Option<&'g dyn GeoLookup>) -> Self {
        Client { addr, geo, location: None }
    }

    /// A client whose location is already known (benchmarks and explain).
    pub fn located(addr: IpAddr, location: Option<Location>) -> Self {
        Client { addr, geo: None, location: Some(location) }
    }

    pub fn location(&mut self) -> Option<&Location> {
        if self.location.is_none() {
            self.location = Some(self.geo.and_then(|g| crate::geoip::locate_cached(g, self.addr)));
        }
        self.location.as_ref().and_then(Option::as_ref)
    }
}

/// Keeps the candidates that are in `wanted`; if none is, leaves `cands` unchanged and
/// returns false.
pub fn narrow(cands: &mut Candidates, wanted: &[RegionId]) -> bool {
    if !cands.iter().any(|c| wanted.contains(c)) {
        return false;
    }
    cands.retain(|c| wanted.contains(c));
    true
}

/// Runs a service's chain over its candidates for `qtype`.
pub fn select(ctx: &mut Ctx<'_>, qtype: u16) -> Candidates {
    let mut cands: Candidates = ctx.service_status.candidates(qtype).iter().copied().collect();
    for step in &ctx.service.chain {
        step.apply(ctx, &mut cands);
    }
    cands
}

/// One step of an explained decision: the candidates after it ran.
#[derive(Debug, Clone)]
pub struct Traced {
    pub step: &'static str,
    pub before: Candidates,
    pub after: Candidates,
}

/// Like [`select`], recording every step (for the admin API's explain; not the query path).
pub fn select_traced(ctx: &mut Ctx<'_>, qtype: u16) -> (Candidates, Vec<Traced>) {
    let mut cands: Candidates = ctx.service_status.candidates(qtype).iter().copied().collect();
    let mut trace = Vec::new();
    for step in &ctx.service.chain {
        let before = cands.clone();
        step.apply(ctx, &mut cands);
        trace.push(Traced { step: step.name(), before, after: cands.clone() });
    }
    (cands, trace)
}
