//! What the prober and the operator say about regions, turned into what each service may
//! answer: candidate regions per address family, the service's mode (all healthy, degraded,
//! failing open, all down) and its TTL. Computed once per change, off the query path, so a
//! query only reads a ready list.

use super::{Gslb, Service};
use crate::config::gslb::{AllDown, MinHealthy};
use crate::policy::Candidates;
use crate::region::{RegionId, RegionStatus};
use crate::rtype;

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
    /// The mode's name in the admin API, metrics and events: `normal`, `degraded`, `fail-open`,
    /// `all-down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Degraded => "degraded",
            Mode::FailOpen => "fail-open",
            Mode::AllDown => "all-down",
        }
    }
}

/// What one service may answer now, computed when health, overrides or config change.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// How the service answers now.
    pub mode: Mode,
    /// How many of its regions are up now (after health, forces and the `unknown` setting).
    pub healthy: usize,
    /// Regions a policy may choose from for A and AAAA answers, in config order.
    pub candidates_a: Candidates,
    /// Regions a policy may choose from for AAAA answers, in config order.
    pub candidates_aaaa: Candidates,
    /// TTL of its answers now, in seconds (`degraded_ttl` applied outside normal mode).
    pub ttl: u32,
    /// The chain's choice made on status change ([`crate::policy::Chain::rechoose`]: the
    /// latency policy's, kept until another region is better by the configured margin).
    pub rechosen: Option<RegionId>,
}

impl ServiceStatus {
    /// The candidates for `qtype`'s family: AAAA for AAAA, A for everything else.
    pub fn candidates(&self, qtype: u16) -> &[RegionId] {
        if qtype == rtype::AAAA { &self.candidates_aaaa } else { &self.candidates_a }
    }

    /// The address family (A or AAAA) whose regions the policy chooses among for `qtype`
    /// at `service`. A and AAAA are their own family. Every other type (ANY, CNAME, MX ...)
    /// takes the family that has something to give now, A first: ANY shows one RRset the
    /// name owns (RFC 8482), so a service of IPv6-only regions shows its AAAA; and a
    /// hostname region answers its CNAME to any type, as a zone's CNAME would. The query
    /// path and explain both ask here.
    pub fn family(&self, qtype: u16, service: &Service) -> u16 {
        if matches!(qtype, rtype::A | rtype::AAAA) {
            return qtype;
        }
        let has_a = match self.mode {
            Mode::AllDown => service.fallback_a.is_some() || service.fallback_aaaa.is_none(),
            _ => !self.candidates_a.is_empty() || self.candidates_aaaa.is_empty(),
        };
        if has_a { rtype::A } else { rtype::AAAA }
    }
}

/// Every region's and every service's state now: the part of a snapshot health and
/// overrides change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Each region's status, by [`RegionId`].
    pub regions: Vec<RegionStatus>,
    /// Each service's status, in the order of [`Gslb::services`].
    pub services: Vec<ServiceStatus>,
}

impl Status {
    /// Every region up at its configured weight: the state before any probe has answered
    /// (see the prober for how `unknown` is treated).
    pub fn initial(gslb: &Gslb) -> Status {
        let regions = gslb
            .regions
            .iter()
            .map(|r| RegionStatus { is_up: true, is_forced: false, weight: r.weight, rtt_ms: None, utilisation: None })
            .collect();
        Status::build(gslb, regions, None)
    }

    /// Derives every service's status from region states. `prev` carries the latency
    /// policy's choices across rebuilds (its hysteresis).
    pub fn build(gslb: &Gslb, regions: Vec<RegionStatus>, prev: Option<&Status>) -> Status {
        Status::build_with(gslb, regions, &|i| prev.and_then(|p| p.services.get(i)).and_then(|s| s.rechosen))
    }

    /// [`Status::build`] with the latency policy's previous choice of service `i` given by
    /// `prev_rechosen` (a reload maps the old choices onto the new ids by name).
    pub fn build_with(
        gslb: &Gslb,
        regions: Vec<RegionStatus>,
        prev_rechosen: &dyn Fn(usize) -> Option<RegionId>,
    ) -> Status {
        let services = gslb
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| service_status(gslb, s, &regions, prev_rechosen(i)))
            .collect();
        Status { regions, services }
    }
}

fn service_status(
    gslb: &Gslb,
    s: &Service,
    regions: &[RegionStatus],
    prev_rechosen: Option<RegionId>,
) -> ServiceStatus {
    let total = s.regions.len();
    let state = |r: RegionId| regions.get(r as usize).copied();
    let up = |r: &RegionId| state(*r).is_some_and(|st| st.is_up);
    // What the operator chose is never undone by failing open: a region forced down, or
    // drained while an undrained region of the service can answer.
    let forced_down = |r: &RegionId| state(*r).is_some_and(|st| st.is_forced && !st.is_up);
    let weight = |r: &RegionId| state(*r).map_or(0, |st| st.weight);
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
    // The regions each family's pool is drawn from: the healthy ones; failing open, every
    // one the operator has not forced down.
    let eligible = |r: &RegionId| if mode == Mode::FailOpen { !forced_down(r) } else { up(r) };
    // Whether some undrained region can answer at all (either family): drained regions then
    // stay out of every family's answers, as the operator asked.
    let has_undrained = s.regions.iter().any(|r| eligible(r) && weight(r) > 0);
    let family = |qtype: u16| -> Candidates {
        if mode == Mode::AllDown {
            return Candidates::new();
        }
        let serving: Candidates =
            s.regions.iter().copied().filter(|&r| gslb.regions[r as usize].answers(qtype).is_some()).collect();
        let mut pool: Candidates = serving.iter().copied().filter(eligible).collect();
        if pool.is_empty() {
            // Every region of this family down by health while others are up: fail open for
            // the family rather than answer nothing, but not over the operator's force.
            pool = serving.iter().copied().filter(|r| !forced_down(r)).collect();
        }
        let active: Candidates = pool.iter().copied().filter(|r| weight(r) > 0).collect();
        if active.is_empty() && !has_undrained { pool } else { active }
    };
    let candidates_a = family(rtype::A);
    let candidates_aaaa = family(rtype::AAAA);
    let ttl = match (mode, s.degraded_ttl) {
        (Mode::Normal, _) | (_, None) => s.ttl,
        (_, Some(d)) => s.ttl.min(d),
    };
    let rechosen = s.chain.rechoose(&candidates_a, regions, prev_rechosen);
    ServiceStatus { mode, healthy, candidates_a, candidates_aaaa, ttl, rechosen }
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
        let regions = g
            .regions
            .iter()
            .zip(up)
            .map(|(r, is_up)| RegionStatus {
                is_up,
                is_forced: false,
                weight: r.weight,
                rtt_ms: None,
                utilisation: None,
            })
            .collect();
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

    /// Per region (a, b, c): up, forced, weight.
    fn with(g: &Gslb, regions: [(bool, bool, u32); 3]) -> ServiceStatus {
        let regions = regions
            .iter()
            .map(|&(is_up, is_forced, weight)| RegionStatus {
                is_up,
                is_forced,
                weight,
                rtt_ms: None,
                utilisation: None,
            })
            .collect();
        Status::build(g, regions, None).services.remove(0)
    }

    #[test]
    fn fail_open_never_undoes_an_operators_force_or_drain() {
        // a: v4+v6, b: v4, c: v4+v6. (up, forced, weight) per region.
        let g = gslb("min_healthy = 2\n");
        const DOWN: (bool, bool, u32) = (false, false, 100);
        const FORCED: (bool, bool, u32) = (false, true, 100);
        const UP: (bool, bool, u32) = (true, false, 100);
        const DRAINED: (bool, bool, u32) = (true, false, 0);
        type Case = ([(bool, bool, u32); 3], Mode, &'static [u16], &'static [u16]);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Health says a and c are down, b is up: 1 < 2, fail open over all three.
            ([DOWN, UP, DOWN], Mode::FailOpen, &[0, 1, 2], &[0, 2]),
            // The same with a and c forced down: only b; AAAA has nothing the operator allows.
            ([FORCED, UP, FORCED], Mode::FailOpen, &[1], &[]),
            // One forced, one down by health: fail open over the unforced.
            ([FORCED, UP, DOWN], Mode::FailOpen, &[1, 2], &[2]),
            // Every IPv6 region down by health, b up: AAAA fails open for the family ...
            ([DOWN, UP, UP], Mode::Degraded, &[1, 2], &[2]),
            ([DOWN, UP, (false, false, 100)], Mode::FailOpen, &[0, 1, 2], &[0, 2]),
            // ... but not over a force.
            ([FORCED, UP, UP], Mode::Degraded, &[1, 2], &[2]),
            ([(true, false, 100), UP, FORCED], Mode::Degraded, &[0, 1], &[0]),
            // Drained a and c, b up: A answers b; AAAA has only drained regions and b can
            // take clients, so AAAA is NODATA rather than the drained regions.
            ([DRAINED, UP, DRAINED], Mode::Normal, &[1], &[]),
            // Everything drained: nothing else can answer, so the drained are answered.
            ([DRAINED, DRAINED, DRAINED], Mode::Normal, &[0, 1, 2], &[0, 2]),
            // Every region forced down: nothing is answered, whatever min_healthy says.
            ([FORCED, FORCED, FORCED], Mode::FailOpen, &[], &[]),
        ];
        for (regions, mode, a, aaaa) in cases {
            let s = with(&g, *regions);
            assert_eq!((s.mode, &s.candidates_a[..], &s.candidates_aaaa[..]), (*mode, *a, *aaaa), "{regions:?}");
        }
    }

    #[test]
    fn any_and_cname_take_the_family_that_has_something() {
        let g = gslb("");
        let svc = &g.services[0];
        const UP: (bool, bool, u32) = (true, false, 100);
        const FORCED: (bool, bool, u32) = (false, true, 100);
        type Case = ([(bool, bool, u32); 3], u16, u16);
        let cases: &[Case] = &[
            ([UP, UP, UP], rtype::ANY, rtype::A),
            ([UP, UP, UP], rtype::CNAME, rtype::A),
            ([UP, UP, UP], rtype::AAAA, rtype::AAAA),
            ([UP, UP, UP], rtype::MX, rtype::A),
        ];
        for (regions, qtype, family) in cases {
            assert_eq!(with(&g, *regions).family(*qtype, svc), *family, "{qtype}");
        }
        // A service whose IPv4 answers are all withdrawn but IPv6 has one: ANY shows AAAA.
        let mut st = with(&g, [UP, FORCED, FORCED]);
        st.candidates_a.clear();
        assert_eq!(st.family(rtype::ANY, svc), rtype::AAAA);
    }

    #[test]
    fn min_healthy_fraction() {
        let g = gslb("min_healthy = \"50%\"\n");
        assert_eq!(with_up(&g, [true, true, false]).mode, Mode::Degraded);
        assert_eq!(with_up(&g, [true, false, false]).mode, Mode::FailOpen);
    }
}
