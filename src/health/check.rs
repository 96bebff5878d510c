//! One configured health check, as the prober runs it: the kind-specific part (what is
//! probed and how, one file per kind under [`super::probe`]) and the timing and thresholds
//! every check has. Validated by the config loader (`config::health`), which fills these in.

use std::sync::Arc;
use std::time::Duration;

use super::probe::Check;

/// One health check of a region. Two checks are equal when they probe the same way, so a
/// reload that leaves a region's checks equal keeps its health state.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    /// What is probed and how (`type = "http"`, `"https"`, `"tcp"` ...).
    pub kind: Arc<dyn Check>,
    /// Between probes, each wait ±10% at random. Default 2s.
    pub interval: Duration,
    /// A probe not done by then fails. Default 1s (at most interval/2); < interval.
    pub timeout: Duration,
    /// Consecutive passes to become healthy. Default 2.
    pub rise: u32,
    /// Consecutive failures to become unhealthy. Default 3.
    pub fall: u32,
    /// `window` and `window_failures`: also unhealthy when this many of the latest probes
    /// failed, consecutive or not. None (the default): `fall` consecutive failures only.
    pub window: Option<Window>,
}

/// The window rule of a check: unhealthy when at least `failures` of the last `size`
/// probes failed; healthy again after `rise` consecutive successes. Catches an endpoint
/// that fails often but never `fall` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Probes looked at (`window`): 2 to `[health] history`.
    pub size: u32,
    /// Failures among them that make the check unhealthy (`window_failures`): 1 to `size`.
    pub failures: u32,
}

impl CheckConfig {
    /// Whether both probe the same way (same kind, same settings), whatever their timing
    /// and thresholds: such a check keeps its streaks across a reload.
    pub fn is_same_probe(&self, other: &CheckConfig) -> bool {
        <dyn Check as PartialEq>::eq(&*self.kind, &*other.kind)
    }
}

impl PartialEq for CheckConfig {
    fn eq(&self, other: &CheckConfig) -> bool {
        self.is_same_probe(other)
            && (self.interval, self.timeout, self.rise, self.fall, self.window)
                == (other.interval, other.timeout, other.rise, other.fall, other.window)
    }
}
