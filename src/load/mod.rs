//! Load: how full each region is, read from its regional balancer, turned into one
//! utilisation per region that the load steps (`shed`, `least-loaded`) read from the
//! snapshot's status.
//!
//! ```text
//! Source::fetch -Reading-> Tracker (EWMA, release limit, staleness) -> LoadTable
//!   (immutable, published on a watch channel) -> new Snapshot status (as health)
//! ```
//!
//! - [`source`]: one configured source (`type = "haproxy"`, `"prometheus"`, `"json"`), its
//!   pure parsers and its fetch, bounded by its timeout.
//! - [`Tracker`]: the pure machine from readings to the utilisation steering uses.
//! - [`poller`]: one task per region, on its own jittered schedule, off the query path.
//!
//! ## Stability
//!
//! DNS caches delay every change by a TTL: a region whose share is cut keeps receiving the
//! clients that resolved before, and one whose share is restored receives new ones only as
//! caches expire. A controller that reacts fully to each reading therefore overshoots and
//! oscillates (cut, load falls, restore, load returns, cut ...). Three damping measures:
//!
//! 1. *Smoothing.* Readings enter an EWMA with weight [`EWMA_ALPHA`] = 0.6: one odd reading
//!    moves the value by 60 % of its jump, yet a region that is really full crosses `high`
//!    within three readings, fast enough to protect it.
//! 2. *A release limit.* A rising utilisation is taken at once (the region needs relief
//!    now), a falling one is released by at most [`RELEASE_PER_READING`] = 0.1 per reading.
//!    The share of a region coming back from overload therefore grows over several intervals,
//!    while resolvers' caches catch up, instead of the whole share returning in one step and
//!    refilling it. This is the limit on how fast a region's share may grow per interval;
//!    cuts are not limited, because an overloaded region must be relieved.
//! 3. *Hysteresis.* The utilisation steering sees changes only when it moved by at least
//!    [`DEAD_BAND`] = 0.02 (no status rebuild on noise), and `least-loaded` treats regions
//!    within its `margin` as equal.
//!
//! A reading older than [`stale_after`] (three intervals, or interval + timeout if longer)
//! makes the load *unknown*: the steps then ignore load for that region (neither empty nor
//! full) and explain says so.

pub mod poller;
pub mod source;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use poller::Poller;
pub use source::{LoadConfig, LoadFailure, SourceKind};

/// Weight of the newest reading in the smoothed utilisation (see the module doc).
pub const EWMA_ALPHA: f64 = 0.6;
/// How far the steering utilisation may fall per reading (see the module doc).
pub const RELEASE_PER_READING: f64 = 0.1;
/// Smaller moves of the steering utilisation are not published.
pub const DEAD_BAND: f64 = 0.02;

/// How long a good reading stays valid: three intervals, at least interval + timeout.
pub fn stale_after(interval: Duration, timeout: Duration) -> Duration {
    (interval * 3).max(interval + timeout)
}

/// One region's load as the admin API and the status read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegionLoad {
    /// What steering uses (smoothed, release-limited); None: unknown (no good reading yet, or
    /// the last one is stale).
    pub utilisation: Option<f64>,
    /// The latest good raw reading.
    pub raw: Option<f64>,
    /// When the latest good reading was taken.
    pub last_good: Option<SystemTime>,
    /// Why the latest attempt failed; None after a good one.
    pub failure: Option<LoadFailure>,
    /// The source's `type`.
    pub source: &'static str,
}

impl RegionLoad {
    /// Seconds since the last good reading.
    pub fn age(&self, now: SystemTime) -> Option<f64> {
        self.last_good.map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64())
    }
}

/// Every region with a load source, by name: immutable, replaced as a whole. The poller
/// announces a new table when what steering sees changed (the status is then rebuilt), and
/// replaces it silently after every other reading, so a table read now has the latest
/// reading's value and time. Never read on the query path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadTable {
    /// Region name -> its readings.
    pub regions: BTreeMap<String, RegionLoad>,
}

impl LoadTable {
    /// The utilisation steering uses for `name`; None when unknown or not read at all.
    pub fn utilisation(&self, name: &str) -> Option<f64> {
        self.regions.get(name).and_then(|l| l.utilisation)
    }
}

/// The pure machine from readings to a region's steering utilisation (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    ewma: Option<f64>,
    steering: Option<f64>,
    stale_after: Duration,
    /// What the tracker publishes for its region.
    pub load: RegionLoad,
}

impl Tracker {
    /// A tracker for a region read by `source` (its type name), whose reading goes unknown
    /// `stale_after` without a good one.
    pub fn new(source: &'static str, stale_after: Duration) -> Tracker {
        Tracker { ewma: None, steering: None, stale_after, load: RegionLoad { source, ..RegionLoad::default() } }
    }

    /// Feeds one attempt's result at `now`. Returns true when what steering sees changed
    /// (the utilisation moved past the dead band, or became known or unknown).
    pub fn observe(&mut self, result: Result<f64, LoadFailure>, now: SystemTime) -> bool {
        let before = self.load.utilisation;
        match result {
            Ok(sample) => {
                let ewma = match self.ewma {
                    None => sample,
                    Some(p) => EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * p,
                };
                self.ewma = Some(ewma);
                let steering = match self.steering {
                    Some(s) if ewma < s => ewma.max(s - RELEASE_PER_READING),
                    _ => ewma,
                };
                self.steering = Some(steering);
                self.load.raw = Some(sample);
                self.load.last_good = Some(now);
                self.load.failure = None;
            }
            Err(f) => {
                self.load.failure = Some(f);
                let stale =
                    self.load.last_good.is_none_or(|t| now.duration_since(t).unwrap_or_default() >= self.stale_after);
                if stale {
                    // Start afresh when readings return: an old average says nothing now.
                    self.ewma = None;
                    self.steering = None;
                }
            }
        }
        let after = self.steering;
        let changed = match (before, after) {
            (Some(b), Some(a)) => (a - b).abs() >= DEAD_BAND,
            (None, None) => false,
            _ => true,
        };
        if changed {
            self.load.utilisation = after;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn rising_load_is_taken_fast_and_released_slowly() {
        let mut t = Tracker::new("haproxy", Duration::from_secs(6));
        let mut seen = Vec::new();
        for (i, s) in [0.1, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1].iter().enumerate() {
            t.observe(Ok(*s), at(i as u64 * 2));
            seen.push((t.load.utilisation.unwrap() * 100.0).round() as i64);
        }
        // Up: 0.1, then 60 % of each jump (crosses 0.9 at the third loaded reading).
        // Down: at most 0.1 per reading.
        assert_eq!(seen, [10, 64, 86, 94, 84, 74, 64, 54]);
    }

    #[test]
    fn noise_inside_the_dead_band_changes_nothing() {
        let mut t = Tracker::new("haproxy", Duration::from_secs(6));
        assert!(t.observe(Ok(0.5), at(0)));
        assert!(!t.observe(Ok(0.51), at(2)));
        assert!(!t.observe(Ok(0.49), at(4)));
        assert_eq!(t.load.utilisation, Some(0.5), "steering keeps the published value");
        // ... but the reading itself is the newest: its age counts from the last good
        // reading, not from the last value published.
        assert_eq!((t.load.raw, t.load.age(at(5))), (Some(0.49), Some(1.0)));
        assert!(t.observe(Ok(0.6), at(6)));
    }

    #[test]
    fn failures_keep_the_reading_until_it_is_stale_then_unknown() {
        let mut t = Tracker::new("json", Duration::from_secs(6));
        t.observe(Ok(0.5), at(0));
        assert!(!t.observe(Err(LoadFailure::Status(404)), at(2)));
        assert_eq!(t.load.utilisation, Some(0.5));
        assert!(!t.observe(Err(LoadFailure::Status(404)), at(4)));
        // Six seconds after the last good reading: unknown (a change).
        assert!(t.observe(Err(LoadFailure::Status(404)), at(6)));
        assert_eq!(t.load.utilisation, None);
        assert_eq!(t.load.failure, Some(LoadFailure::Status(404)));
        // A good reading afterwards starts afresh, not from the old average.
        assert!(t.observe(Ok(0.2), at(8)));
        assert_eq!(t.load.utilisation, Some(0.2));
        // Never read at all: unknown from the first failure, without a change.
        let mut n = Tracker::new("json", Duration::from_secs(6));
        assert!(!n.observe(Err(LoadFailure::Timeout(Duration::from_secs(1))), at(0)));
        assert_eq!(n.load.utilisation, None);
    }
}
