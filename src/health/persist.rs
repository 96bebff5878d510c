//! What the checks know, kept across restarts: `health.json` in the admin `state_dir`.
//!
//! The prober's verdicts are written (temp file, fsync, rename, as `overrides.json`)
//! whenever one changes, every [`REFRESH`] while gslbd runs, and at shutdown. At start each
//! region whose checks are the same as when its verdict was saved (same
//! [`super::RegionChecks::fingerprint`]) starts from that verdict, its `since` and RTT
//! average, instead of `Unknown`, if the file was written at most [`MAX_AGE`] ago: a
//! restart (an upgrade, a crash) does not answer a dead region for `fall` probes, nor, with
//! `unknown = "down"`, withhold healthy ones. The verdict then changes only on the usual
//! evidence (`rise`/`fall`/window).
//!
//! Ignored, with a log line, and the regions start `Unknown` as without the file: a file
//! older than [`MAX_AGE`] or from the future (the clock moved: its age is unknown); a region
//! whose checks changed; a file that cannot be read or parsed (gslbd replaces it with the
//! next save; never a reason not to start).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::shutdown::Shutdown;

use super::{HealthTable, Seed, Verdict};

/// The file in the state directory.
pub const FILE: &str = "health.json";
/// Saved verdicts older than this (since the file was last written) are not trusted: the
/// world may have changed while gslbd was down. Five minutes covers a restart, an upgrade
/// or a crash loop, and is still short against how long outages last.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// The file is rewritten at least this often while gslbd runs, so its age says how long
/// ago the verdicts were still known to hold, even after a crash.
pub const REFRESH: Duration = Duration::from_secs(60);

/// A verdict worth saving (`Unknown` is what a start without the file gives anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedVerdict {
    /// The region was healthy.
    Healthy,
    /// The region was unhealthy.
    Unhealthy,
}

/// One region's saved verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRegion {
    /// The verdict the region had when the file was written.
    pub verdict: SavedVerdict,
    /// When the region entered it, seconds since the Unix epoch.
    pub since: u64,
    /// The fingerprint of the checks that reached it.
    pub checks: String,
    /// The region's smoothed probe round-trip time in milliseconds, for the latency policy;
    /// None when no probe measured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ewma_ms: Option<f64>,
}

/// The content of `health.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// File format version; 1 is written.
    pub version: u32,
    /// When the file was written, seconds since the Unix epoch.
    pub saved_at: u64,
    /// The saved verdict of each region, by region name.
    pub regions: BTreeMap<String, SavedRegion>,
}

/// Why `health.json` could not be used (it is then ignored).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `path` could not be read; `source` is the I/O error (a missing file is not an error).
    #[error("{}: cannot read saved health verdicts: {source}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Read { path: PathBuf, source: std::io::Error },
    /// `path` is not valid JSON for [`Saved`]: `line`, `column` (1-based) and `message` are from
    /// the JSON parser.
    #[error("{}:{line}:{column}: saved health verdicts are not valid: {message}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// The verdicts of a health table worth saving, as of `now` (seconds since the epoch).
pub fn snapshot(table: &HealthTable, now: u64) -> Saved {
    let regions = table
        .regions
        .iter()
        .filter_map(|(name, h)| {
            let verdict = match h.state {
                Verdict::Healthy => SavedVerdict::Healthy,
                Verdict::Unhealthy => SavedVerdict::Unhealthy,
                Verdict::Unknown => return None,
            };
            let checks = table.fingerprints.get(name)?.clone();
            Some((name.clone(), SavedRegion { verdict, since: secs(h.since), checks, rtt_ewma_ms: h.rtt_ewma_ms }))
        })
        .collect();
    Saved { version: 1, saved_at: now, regions }
}

/// Reads `dir/health.json`; none saved yet is `Ok(None)`.
pub fn load(dir: &Path) -> Result<Option<Saved>, LoadError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| LoadError::Parse {
        path,
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// The seeds for the prober from a saved file, if it is recent enough at `now`.
pub fn seeds(saved: &Saved, now: u64) -> HashMap<String, Seed> {
    let Some(age) = now.checked_sub(saved.saved_at).filter(|a| *a <= MAX_AGE.as_secs()) else {
        tracing::info!(
            saved_at = saved.saved_at,
            max_age_s = MAX_AGE.as_secs(),
            "saved health verdicts are too old (or from the future); regions start unknown"
        );
        return HashMap::new();
    };
    tracing::info!(regions = saved.regions.len(), age_s = age, "restoring saved health verdicts");
    saved
        .regions
        .iter()
        .map(|(name, r)| {
            let seed = Seed {
                state: match r.verdict {
                    SavedVerdict::Healthy => Verdict::Healthy,
                    SavedVerdict::Unhealthy => Verdict::Unhealthy,
                },
                since: UNIX_EPOCH + Duration::from_secs(r.since),
                rtt_ewma_ms: r.rtt_ewma_ms,
                fingerprint: r.checks.clone(),
            };
            (name.clone(), seed)
        })
        .collect()
}

/// The seeds from `dir/health.json` at start: whatever goes wrong is a log line and no
/// seeds, never a failed start.
pub fn restore(dir: &Path) -> HashMap<String, Seed> {
    match load(dir) {
        Ok(Some(saved)) => seeds(&saved, secs(SystemTime::now())),
        Ok(None) => HashMap::new(),
        Err(e) => {
            tracing::warn!(error = %e, "saved health verdicts ignored; regions start unknown");
            HashMap::new()
        }
    }
}

/// What decides whether the file needs writing now: the verdicts, not RTTs or history.
fn verdicts(saved: &Saved) -> Vec<(&String, SavedVerdict, u64, &String)> {
    saved.regions.iter().map(|(k, r)| (k, r.verdict, r.since, &r.checks)).collect()
}

/// Saves the verdicts of every published table whenever one changes, every [`REFRESH`],
/// and once more at shutdown. A failed write is logged and retried with the next one.
pub async fn run(dir: PathBuf, mut health: watch::Receiver<Arc<HealthTable>>, mut shutdown: Shutdown) {
    let mut last: Option<Saved> = None;
    let mut current = health.borrow_and_update().clone();
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            changed = health.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
            _ = refresh.tick() => true,
            _ = shutdown.recv() => true,
        };
        if shutdown.is_shutdown() {
            // The prober stops now and publishes an empty table: what it knew before is
            // what the next start should begin from.
            save(&dir, snapshot(&current, secs(SystemTime::now()))).await;
            return;
        }
        current = health.borrow_and_update().clone();
        let next = snapshot(&current, secs(SystemTime::now()));
        let due = force || last.as_ref().is_none_or(|l| verdicts(l) != verdicts(&next));
        if due && save(&dir, next.clone()).await {
            last = Some(next);
        }
    }
}

/// Writes the file off the async threads; false (and a log line) if that failed.
async fn save(dir: &Path, saved: Saved) -> bool {
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || crate::overrides::write_json(&dir, FILE, &saved)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot save health verdicts; will retry");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "health verdict save task failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::health::RegionHealth;

    fn table(regions: &[(&str, Verdict)]) -> HealthTable {
        let mut t = HealthTable::default();
        for (name, state) in regions {
            t.regions.insert(
                name.to_string(),
                RegionHealth {
                    state: *state,
                    since: UNIX_EPOCH + Duration::from_secs(1000),
                    reason: None,
                    rtt_ewma_ms: Some(12.5),
                    recent: VecDeque::new(),
                    transitions: 1,
                },
            );
            t.fingerprints.insert(name.to_string(), format!("fp-{name}"));
        }
        t
    }

    #[test]
    fn saves_known_verdicts_and_seeds_them_back_while_recent() {
        let tmp = crate::testutil::TempDir::new("health-save");
        let dir = tmp.path().join("state");
        assert_eq!(load(&dir).unwrap(), None, "nothing saved yet");
        let t = table(&[("up", Verdict::Healthy), ("down", Verdict::Unhealthy), ("new", Verdict::Unknown)]);
        let saved = snapshot(&t, 2000);
        assert_eq!(saved.regions.keys().collect::<Vec<_>>(), ["down", "up"], "unknown is not worth saving");
        crate::overrides::write_json(&dir, FILE, &saved).unwrap();
        let back = load(&dir).unwrap().unwrap();
        assert_eq!(back, saved);
        // (seconds after the save, regions seeded)
        let max = MAX_AGE.as_secs();
        let cases: &[(i64, usize)] = &[(0, 2), (max as i64, 2), (max as i64 + 1, 0), (-1, 0)];
        for &(after, want) in cases {
            let now = (2000 + after) as u64;
            assert_eq!(seeds(&back, now).len(), want, "{after} s after the save");
        }
        let s = &seeds(&back, 2000)["down"];
        assert_eq!(
            (s.state, s.since, s.rtt_ewma_ms, s.fingerprint.as_str()),
            (Verdict::Unhealthy, UNIX_EPOCH + Duration::from_secs(1000), Some(12.5), "fp-down")
        );
    }

    #[test]
    fn a_corrupt_or_unreadable_file_is_an_error_value_not_a_crash() {
        let tmp = crate::testutil::TempDir::new("health-corrupt");
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join(FILE), "{\"version\": 1,\n \"regions\": [}").unwrap();
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("health.json:2:") && e.contains("not valid"), "{e}");
        assert!(restore(&dir).is_empty());
        std::fs::remove_file(dir.join(FILE)).unwrap();
        std::fs::create_dir(dir.join(FILE)).unwrap();
        assert!(matches!(load(&dir), Err(LoadError::Read { .. })));
        assert!(restore(&dir).is_empty());
    }
}
