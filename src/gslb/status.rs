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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config;
    use crate::zone::ZoneSet;

    const ZONE: &str =
        "$ORIGIN s.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\n";

    fn gslb(service_extra: &str) -> Gslb {
        let toml = format!(
            "[regions.a]\naddresses = [\"192.0.2.1\", \"2001:db8::1\"]\n[regions.b]\naddresses = [\"192.0.2.2\"]\n[regions.c]\naddresses = [\"192.0.2.3\", \"2001:db8::3\"]\nweight = 0\n[services.\"x.s.test\"]\nregions = [\"a\", \"b\", \"c\"]\npolicy = \"weighted\"\nttl = 60\n{service_extra}"
        );
        let cfg = config::parse(&toml, Path::new("t.toml")).unwrap();
        let apex = crate::name::Name::parse("s.test.", None).unwrap();
        let recs = crate::zone::parse::parse_str(ZONE, Path::new("z"), &apex, Path::new("/")).unwrap();
        let zones = ZoneSet::new(vec![crate::zone::Zone::from_records(&apex, recs, Path::new("z")).unwrap()]);
        Gslb::build(&cfg.gslb, &zones, None, Path::new("t.toml")).unwrap()
    }

    fn with_up(g: &Gslb, up: [bool; 3]) -> ServiceStatus {
        let regions =
            g.regions.iter().zip(up).map(|(r, is_up)| RegionStatus { is_up, weight: r.weight, rtt_ms: None }).collect();
        Status::build(g, regions, None).services.remove(0)
    }

    #[test]
    fn modes_candidates_and_ttls() {
        let g = gslb("min_healthy = 2\ndegraded_ttl = 10\n");
        // (up, mode, A candidates, AAAA candidates, ttl)
        type Case = ([bool; 3], Mode, &'static [u16], &'static [u16], u32);
        let cases: &[Case] = &[
            // c is drained (weight 0): left out while a or b is up.
            ([true, true, true], Mode::Normal, &[0, 1], &[0], 60),
            ([true, true, false], Mode::Degraded, &[0, 1], &[0], 10),
            // b (no IPv6) down: AAAA still a.
            ([true, false, true], Mode::Degraded, &[0], &[0], 10),
            // Only the drained one up: 1 < min_healthy 2 -> fail open over all, drained out.
            ([false, false, true], Mode::FailOpen, &[0, 1], &[0], 10),
            // One healthy of three, min 2: fail open.
            ([true, false, false], Mode::FailOpen, &[0, 1], &[0], 10),
            ([false, false, false], Mode::FailOpen, &[0, 1], &[0], 10),
        ];
        for (up, mode, a, aaaa, ttl) in cases {
            let s = with_up(&g, *up);
            assert_eq!(s.mode, *mode, "{up:?}");
            assert_eq!(&s.candidates_a[..], *a, "{up:?} A");
            assert_eq!(&s.candidates_aaaa[..], *aaaa, "{up:?} AAAA");
            assert_eq!(s.ttl, *ttl, "{up:?} ttl");
        }
    }

    #[test]
    fn all_down_modes_other_than_fail_open() {
        for mode in ["nodata", "servfail"] {
            let g = gslb(&format!("when_all_down = \"{mode}\"\n"));
            let s = with_up(&g, [false, false, false]);
            assert_eq!(s.mode, Mode::AllDown);
            assert!(s.candidates_a.is_empty());
        }
        let g = gslb("when_all_down = \"fallback\"\nfallback = [\"203.0.113.9\"]\n");
        assert_eq!(with_up(&g, [false, false, false]).mode, Mode::AllDown);
        assert!(g.services[0].fallback_a.is_some());
        assert!(g.services[0].fallback_aaaa.is_none());
        // Only the drained region healthy: it is answered (drained means "no new clients while
        // others can take them"), the service is degraded, not down.
        let s = with_up(&g, [false, false, true]);
        assert_eq!((s.mode, &s.candidates_a[..]), (Mode::Degraded, &[2u16][..]));
    }

    #[test]
    fn min_healthy_fraction() {
        let g = gslb("min_healthy = \"50%\"\n");
        assert_eq!(with_up(&g, [true, true, false]).mode, Mode::Degraded);
        assert_eq!(with_up(&g, [true, false, false]).mode, Mode::FailOpen);
    }
}
