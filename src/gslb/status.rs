//! What the prober and the operator say about regions, turned into what each service may
//! answer: candidate regions per address family, the service's mode (all healthy, degraded,
//! failing open, all down) and its TTL. Computed once per change, off the query path, so a
//! query only reads a ready list.

use smallvec::SmallVec;

use super::{Gslb, RegionId, Service};
use crate::config::gslb::{AllDown, MinHealthy};
use crate::rtype;

/// The effective state of one region: health after overrides, weight after overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionStatus {
    pub is_up: bool,
    pub weight: u32,
    /// Smoothed RTT of health probes, milliseconds.
    pub rtt_ms: Option<f64>,
}

/// How a service answers right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every region healthy.
    Normal,
    /// Some regions down; answers name only healthy ones.
    Degraded,
    /// Fewer healthy regions than `min_healthy` (or none, with `when_all_down = fail-open`):
    /// answers as if every region were healthy.
    FailOpen,
    /// No region healthy and the service answers per `when_all_down` (not fail-open).
    AllDown,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Degraded => "degraded",
            Mode::FailOpen => "fail-open",
            Mode::AllDown => "all-down",
        }
    }
}

pub type Candidates = SmallVec<[RegionId; 8]>;

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub mode: Mode,
    pub healthy: usize,
    /// Regions a policy may choose from for A and AAAA answers, in config order.
    pub candidates_a: Candidates,
    pub candidates_aaaa: Candidates,
    pub ttl: u32,
    /// The latency policy's current choice (kept until another region is better by the
    /// configured margin).
    pub latency_choice: Option<RegionId>,
}

impl ServiceStatus {
    pub fn candidates(&self, qtype: u16) -> &[RegionId] {
        if qtype == rtype::AAAA { &self.candidates_aaaa } else { &self.candidates_a }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub regions: Vec<RegionStatus>,
    pub services: Vec<ServiceStatus>,
}

impl Status {
    /// Every region up at its configured weight: the state before any probe has answered
    /// (see the prober for how `unknown` is treated).
    pub fn initial(gslb: &Gslb) -> Status {
        let regions =
            gslb.regions.iter().map(|r| RegionStatus { is_up: true, weight: r.weight, rtt_ms: None }).collect();
        Status::build(gslb, regions, None)
    }

    /// Derives every service's status from region states. `prev` carries the latency
    /// policy's choices across rebuilds (its hysteresis).
    pub fn build(gslb: &Gslb, regions: Vec<RegionStatus>, prev: Option<&Status>) -> Status {
        let services = gslb
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| service_status(gslb, s, &regions, prev.and_then(|p| p.services.get(i))))
            .collect();
        Status { regions, services }
    }
}

fn service_status(gslb: &Gslb, s: &Service, regions: &[RegionStatus], prev: Option<&ServiceStatus>) -> ServiceStatus {
    let total = s.regions.len();
    let up = |r: &RegionId| regions.get(*r as usize).is_some_and(|st| st.is_up);
    let healthy = s.regions.iter().filter(|r| up(r)).count();
    let needed = match s.min_healthy {
        MinHealthy::Count(n) => n.min(total),
        MinHealthy::Fraction(f) => ((f * total as f64).ceil() as usize).min(total),
    };
    let mode = if healthy == 0 {
        if s.when_all_down == AllDown::FailOpen { Mode::FailOpen } else { Mode::AllDown }
    } else if healthy < needed {
        Mode::FailOpen
    } else if healthy < total {
        Mode::Degraded
    } else {
        Mode::Normal
    };
    let family = |qtype: u16| -> Candidates {
        let serving: Candidates =
            s.regions.iter().copied().filter(|&r| gslb.regions[r as usize].answers(qtype).is_some()).collect();
        if mode == Mode::AllDown {
            return Candidates::new();
        }
        let weight = |r: &RegionId| regions.get(*r as usize).map_or(0, |st| st.weight);
        let pool: Candidates = if mode == Mode::FailOpen {
            serving
        } else {
            let healthy: Candidates = serving.iter().copied().filter(up).collect();
            // Every region of this family down while others are up: fail open for the family
            // rather than answer nothing.
            if healthy.is_empty() { serving } else { healthy }
        };
        // Drained regions (weight 0) only when nothing else is left.
        let active: Candidates = pool.iter().copied().filter(|r| weight(r) > 0).collect();
        if active.is_empty() { pool } else { active }
    };
    let candidates_a = family(rtype::A);
    let candidates_aaaa = family(rtype::AAAA);
    let ttl = match (mode, s.degraded_ttl) {
        (Mode::Normal, _) | (_, None) => s.ttl,
        (_, Some(d)) => s.ttl.min(d),
    };
    let latency_choice = crate::policy::latency::choose(s, &candidates_a, regions, prev.and_then(|p| p.latency_choice));
    ServiceStatus { mode, healthy, candidates_a, candidates_aaaa, ttl, latency_choice }
}
