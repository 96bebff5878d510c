//! Operator overrides: weights, drains and forced states set through the admin API.
//!
//! They are part of the state an operator relies on at 3 a.m., so they survive restarts and
//! crashes: every change is written to `overrides.json` in the state directory atomically
//! (temp file, fsync, rename, fsync of the directory) *before* the API answers 200, and
//! appended to `audit.log` (one JSON object per line: time, client, token id, old -> new).
//! On start the file is read back; a region that no longer exists keeps its entry (it may
//! come back with the next config) but has no effect.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A forced health state, optionally until a time (then the prober decides again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Force {
    /// True forces the region up, false forces it down, whatever the probes say.
    pub up: bool,
    /// Seconds since the Unix epoch; None: until changed.
    pub until: Option<u64>,
}

/// What the operator has set for one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionOverride {
    /// Replaces the configured weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Drained: weight 0, state kept (no new answers while other regions can take them).
    #[serde(default)]
    pub drained: bool,
    /// A forced health state, if one is set (expired ones are removed by [`expire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<Force>,
    /// Who made the last change (token id) and when (seconds since the epoch).
    #[serde(default)]
    pub updated_by: String,
    /// When the last change was made, in seconds since the Unix epoch.
    #[serde(default)]
    pub updated_at: u64,
    /// In cluster mode, the instance that took the change (empty when standalone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_on: String,
}

impl RegionOverride {
    /// True when nothing is overridden (weight, drain and force all unset); such entries are
    /// dropped rather than saved.
    pub fn is_empty(&self) -> bool {
        self.weight.is_none() && !self.drained && self.force.is_none()
    }

    /// The weight to answer with, given the configured one.
    pub fn effective_weight(&self, configured: u32) -> u32 {
        if self.drained { 0 } else { self.weight.unwrap_or(configured) }
    }

    /// The forced state at `now`, if a force is in effect.
    pub fn forced(&self, now: u64) -> Option<bool> {
        self.force.filter(|f| f.until.is_none_or(|u| now < u)).map(|f| f.up)
    }
}

/// All overrides, by region name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// File format version; 1 is written.
    pub version: u32,
    /// The override of each region, by region name.
    pub regions: BTreeMap<String, RegionOverride>,
}

/// Why the overrides file could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `path` could not be read (`source` is the I/O error); a missing file is not an error.
    #[error("{}: cannot read overrides: {source}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Read { path: PathBuf, source: io::Error },
    /// `path` is not valid overrides JSON: `line` and `column` (1-based) and `message` are from
    /// the JSON parser.
    #[error("{}:{line}:{column}: overrides file is not valid: {message}\n  hint: fix or remove it; gslbd rewrites it on the next change", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    /// `path` (the file being replaced, or the audit log) could not be written; `source` is the
    /// I/O error.
    #[error("{}: cannot write: {source}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Write { path: PathBuf, source: io::Error },
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// The state directory's files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The files under `dir` (the configured `admin.state_dir`); nothing is read or created yet.
    pub fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn overrides_path(&self) -> PathBuf {
        self.dir.join("overrides.json")
    }

    /// Reads the saved overrides; none saved yet is not an error.
    pub fn load(&self) -> Result<Overrides, StoreError> {
        let path = self.overrides_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Overrides::default()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Parse {
            path,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Writes the overrides so that a crash at any point leaves either the old file or the
    /// new one, never a torn one.
    pub fn save(&self, overrides: &Overrides) -> Result<(), StoreError> {
        write_json(&self.dir, "overrides.json", overrides)
    }

    /// Appends one audit record and syncs it.
    pub fn audit(&self, record: &AuditRecord<'_>) -> Result<(), StoreError> {
        let path = self.dir.join("audit.log");
        let err = |source| StoreError::Write { path: path.clone(), source };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let mut line = serde_json::to_string(record).map_err(|e| err(io::Error::other(e)))?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(err)?;
        f.write_all(line.as_bytes()).map_err(err)?;
        f.sync_data().map_err(err)
    }
}

/// Writes `value` as pretty JSON to `dir/file` so that a crash at any point leaves either
/// the old file or the new one, never a torn one: temp file, fsync, rename, fsync of the
/// directory. Used for every file of the state directory that is replaced as a whole.
pub fn write_json<T: Serialize>(dir: &Path, file: &str, value: &T) -> Result<(), StoreError> {
    let path = dir.join(file);
    let err = |source| StoreError::Write { path: path.clone(), source };
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let mut text = serde_json::to_string_pretty(value).map_err(|e| err(io::Error::other(e)))?;
    text.push('\n');
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(err)?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The API client's address ("gslbd" for changes gslbd makes itself, e.g. an expiry).
    pub client: &'a str,
    /// The id of the token used (never the token).
    pub token: &'a str,
    /// In cluster mode, the instance that took the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<&'a str>,
    /// What was done: `weight`, `drain`, `drain-forced` (a drain that needed its `"force":
    /// true`: past the safe-drain limit or cluster mode's min_healthy guard rail), `undrain`,
    /// `force-up`, `force-down`, `force-auto` or `force-expired`.
    pub action: &'a str,
    /// The region's name.
    pub region: &'a str,
    /// The region's override before the change.
    pub old: &'a RegionOverride,
    /// The region's override after the change.
    pub new: &'a RegionOverride,
}

/// Removes forces whose time is up; returns the regions changed.
pub fn expire(overrides: &mut Overrides, now: u64) -> Vec<(String, RegionOverride, RegionOverride)> {
    let mut changed = Vec::new();
    for (name, o) in overrides.regions.iter_mut() {
        if o.force.is_some_and(|f| f.until.is_some_and(|u| now >= u)) {
            let old = o.clone();
            o.force = None;
            o.updated_by = "expiry".into();
            o.updated_at = now;
            changed.push((name.clone(), old, o.clone()));
        }
    }
    overrides.regions.retain(|_, o| !o.is_empty());
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_loads_back() {
        let tmp = crate::testutil::TempDir::new("save");
        let dir = tmp.path().join("state");
        let store = Store::new(dir.clone());
        assert_eq!(store.load().unwrap(), Overrides::default(), "nothing saved yet");
        let mut o = Overrides { version: 1, ..Default::default() };
        o.regions.insert(
            "eu-west".into(),
            RegionOverride {
                weight: Some(7),
                drained: true,
                force: Some(Force { up: false, until: Some(99) }),
                updated_by: "ops".into(),
                updated_at: 5,
                updated_on: String::new(),
            },
        );
        store.save(&o).unwrap();
        assert_eq!(store.load().unwrap(), o);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::write(dir.join("overrides.json"), "{\"version\": 1,\n \"regions\": [}").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("overrides.json:2:") && e.contains("not valid"), "{e}");
    }

    #[test]
    fn audit_appends_lines() {
        let tmp = crate::testutil::TempDir::new("audit");
        let dir = tmp.path().join("state");
        let store = Store::new(dir.clone());
        let (a, b) = (RegionOverride::default(), RegionOverride { drained: true, ..Default::default() });
        for action in ["drain", "undrain"] {
            store
                .audit(&AuditRecord {
                    time: 1,
                    client: "127.0.0.1:5000",
                    token: "ops",
                    instance: None,
                    action,
                    region: "r",
                    old: &a,
                    new: &b,
                })
                .unwrap();
        }
        let text = fs::read_to_string(dir.join("audit.log")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().next().unwrap().contains("\"action\":\"drain\""));
    }

    #[test]
    fn weights_forces_and_expiry() {
        let mut o = RegionOverride { weight: Some(5), ..Default::default() };
        assert_eq!(o.effective_weight(100), 5);
        o.drained = true;
        assert_eq!(o.effective_weight(100), 0);
        o.force = Some(Force { up: false, until: Some(10) });
        assert_eq!(o.forced(9), Some(false));
        assert_eq!(o.forced(10), None);
        let mut all = Overrides::default();
        all.regions.insert(
            "a".into(),
            RegionOverride { force: Some(Force { up: true, until: Some(10) }), ..Default::default() },
        );
        all.regions.insert("b".into(), o);
        let changed = expire(&mut all, 10);
        assert_eq!(changed.len(), 2);
        assert!(!all.regions.contains_key("a"), "an override with nothing left is removed");
        assert!(all.regions["b"].drained && all.regions["b"].force.is_none());
    }
}
