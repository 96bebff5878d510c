//! Health: probes of each region's endpoints, turned into one verdict per region.
//!
//! ```text
//! Probe::run -ProbeOutcome-> Machine (rise/fall, per check) -> quorum -> RegionHealth
//!   -> HealthTable (immutable, published on a watch channel) -> new Snapshot status
//! ```
//!
//! - [`check`]: one configured check; [`probe`]: one attempt of it (a file per kind:
//!   http/https, tcp), bounded by its timeout.
//! - [`machine`]: the pure rise/fall state machine of one check.
//! - [`prober`]: the tasks that probe on a jittered schedule, and `apply()` on reload,
//!   which keeps what the checks know.
//! - [`persist`]: the verdicts saved in `state_dir/health.json`, to start from after a
//!   restart.
//!
//! The DNS path never waits on any of this: it reads the region status of the current
//! snapshot, rebuilt from each published [`HealthTable`] off the query path.
//!
//! A region starts [`Verdict::Unknown`] and stays so until its checks reach a verdict, unless
//! something is already known: a reload that changes its checks keeps its verdict, and a
//! restart starts from the verdict saved in `health.json` (recent, same checks).
//! `[health] unknown = "up"` (the default) answers unknown regions, so a start never
//! empties the answers while the first probes are in flight; `"down"` withholds them until
//! they have proven healthy. A region without checks is not in the table and is
//! always up.

pub mod check;
pub mod machine;
pub mod persist;
pub mod probe;
pub mod prober;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

pub use machine::{Machine, Transition};
pub use probe::{FailReason, Probe, ProbeOutcome};
pub use prober::{Prober, RegionChecks, Seed};

/// What the checks say about a region (or a single check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No verdict yet: just started, or its checks just changed.
    Unknown,
    /// Passed `rise` probes in a row (a region: enough of its checks healthy, per `quorum`).
    Healthy,
    /// Failed `fall` probes in a row, or the window rule tripped (a region: too few checks
    /// healthy).
    Unhealthy,
}

impl Verdict {
    /// The verdict's name in the admin API, metrics, events and `health.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe result, kept for the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// When the probe finished.
    pub at: SystemTime,
    /// Which of the region's checks (index in its config).
    pub check: usize,
    /// Passed with its round-trip time, or failed with a reason.
    pub outcome: ProbeOutcome,
}

impl ProbeRecord {
    /// The round-trip time of a passed probe; None for a failed one.
    pub fn rtt(&self) -> Option<Duration> {
        match self.outcome {
            ProbeOutcome::Ok { rtt } => Some(rtt),
            ProbeOutcome::Fail(_) => None,
        }
    }
}

/// The health of one region that has checks.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHealth {
    /// The region's verdict now.
    pub state: Verdict,
    /// When it entered `state` (or when its checks started, for `Unknown`).
    pub since: SystemTime,
    /// The reason of the latest failed probe; cleared when the region becomes healthy.
    pub reason: Option<FailReason>,
    /// Smoothed RTT of successful probes ([`prober::EWMA_ALPHA`]), for the latency policy.
    pub rtt_ewma_ms: Option<f64>,
    /// The latest probe results, oldest first (`[health] history` of them).
    pub recent: VecDeque<ProbeRecord>,
    /// Verdict changes since its checks started.
    pub transitions: u64,
}

/// Every probed region's health by region name: immutable, replaced as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthTable {
    /// Each probed region's health, by region name (regions without checks are absent).
    pub regions: BTreeMap<String, RegionHealth>,
    /// Each region's [`RegionChecks::fingerprint`]: what its verdict was reached with.
    pub fingerprints: BTreeMap<String, String>,
}

impl HealthTable {
    /// The health of the region named `name`; None when it has no checks (or no such region).
    pub fn region(&self, name: &str) -> Option<&RegionHealth> {
        self.regions.get(name)
    }

    /// Whether answers may name this region: regions without checks always, `Unknown`
    /// ones as configured.
    pub fn is_up(&self, name: &str, unknown_is_up: bool) -> bool {
        match self.regions.get(name).map(|h| h.state) {
            None | Some(Verdict::Healthy) => true,
            Some(Verdict::Unhealthy) => false,
            Some(Verdict::Unknown) => unknown_is_up,
        }
    }
}

/// A region's verdict from its checks' states: healthy when at least `need` checks are,
/// unhealthy as soon as too many are unhealthy for `need` ever to be reached, else unknown.
pub fn quorum(states: &[Verdict], need: usize) -> Verdict {
    let need = need.clamp(1, states.len().max(1));
    let healthy = states.iter().filter(|s| **s == Verdict::Healthy).count();
    let unhealthy = states.iter().filter(|s| **s == Verdict::Unhealthy).count();
    if healthy >= need {
        Verdict::Healthy
    } else if unhealthy > states.len().saturating_sub(need) {
        Verdict::Unhealthy
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn quorum_table() {
        let cases: &[(&[Verdict], usize, Verdict)] = &[
            (&[Healthy], 1, Healthy),
            (&[Unhealthy], 1, Unhealthy),
            (&[Unknown], 1, Unknown),
            // All must pass (the default: need = number of checks).
            (&[Healthy, Healthy, Healthy], 3, Healthy),
            (&[Healthy, Healthy, Unknown], 3, Unknown),
            (&[Healthy, Healthy, Unhealthy], 3, Unhealthy),
            (&[Unknown, Unknown, Unhealthy], 3, Unhealthy),
            // Two of three.
            (&[Healthy, Healthy, Unhealthy], 2, Healthy),
            (&[Healthy, Unknown, Unhealthy], 2, Unknown),
            (&[Healthy, Unhealthy, Unhealthy], 2, Unhealthy),
            // One of three.
            (&[Unhealthy, Unhealthy, Healthy], 1, Healthy),
            (&[Unhealthy, Unhealthy, Unknown], 1, Unknown),
            (&[Unhealthy, Unhealthy, Unhealthy], 1, Unhealthy),
        ];
        for &(states, need, want) in cases {
            assert_eq!(quorum(states, need), want, "{states:?} need {need}");
        }
    }

    #[test]
    fn regions_without_checks_are_up_and_unknown_is_configurable() {
        let mut t = HealthTable::default();
        let h = |state| RegionHealth {
            state,
            since: SystemTime::UNIX_EPOCH,
            reason: None,
            rtt_ewma_ms: None,
            recent: VecDeque::new(),
            transitions: 0,
        };
        t.regions.insert("u".into(), h(Unknown));
        t.regions.insert("d".into(), h(Unhealthy));
        t.regions.insert("h".into(), h(Healthy));
        assert!(t.is_up("no-checks", false));
        assert!(t.is_up("u", true) && !t.is_up("u", false));
        assert!(!t.is_up("d", true) && t.is_up("h", false));
    }
}
