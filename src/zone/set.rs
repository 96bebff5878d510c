//! Every zone gslbd serves, and how a query name finds its zone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::store::Zone;
use super::{SourcePos, ZoneError, ZoneErrorKind};
use crate::name::{Name, label_count};

/// The file name suffix that marks a zone file in the zones directory; the rest of the file
/// name is the zone's origin (`example.com.zone` serves `example.com.`). Files with other
/// names (e.g. `*.inc` for `$INCLUDE`) are not zones of their own.
pub const ZONE_FILE_SUFFIX: &str = ".zone";

/// The served zones, keyed by lowercased apex.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: HashMap<Box<[u8]>, Zone, foldhash::fast::RandomState>,
    /// Label counts of the shallowest and deepest apex: a query name's suffixes outside this
    /// range cannot be an apex, so they are not probed.
    min_labels: usize,
    max_labels: usize,
}

impl ZoneSet {
    /// Indexes already-built zones by lowercased apex; a later zone with the same apex replaces
    /// an earlier one (use [`ZoneSet::load_dir`] to have duplicates reported).
    pub fn new(zones: Vec<Zone>) -> ZoneSet {
        let mut set = ZoneSet { min_labels: usize::MAX, ..Default::default() };
        for z in zones {
            let n = z.apex().label_count();
            set.min_labels = set.min_labels.min(n);
            set.max_labels = set.max_labels.max(n);
            set.zones.insert(z.apex().as_wire().into(), z);
        }
        set
    }

    /// Adds `set` at the apex of the zone `apex_lower` (replacing one of its type): the
    /// DNSKEY RRset of a signed zone.
    pub fn publish_apex(&mut self, apex_lower: &[u8], set: super::store::RRset) {
        if let Some(z) = self.zones.get_mut(apex_lower) {
            z.publish_apex(set);
        }
    }

    /// Loads every `*.zone` file of `dir`. All errors of all files are reported.
    pub fn load_dir(dir: &Path) -> Result<ZoneSet, Vec<ZoneError>> {
        let at_dir = |kind| ZoneError { pos: SourcePos { file: Arc::new(dir.to_path_buf()), line: 0, col: 0 }, kind };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return Err(vec![at_dir(ZoneErrorKind::Unreadable(e))]),
        };
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| vec![at_dir(ZoneErrorKind::Unreadable(e))])?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if let Some(origin) = file_name.strip_suffix(ZONE_FILE_SUFFIX)
                && path.is_file()
            {
                files.push((path.clone(), origin.to_string()));
            }
        }
        files.sort();
        let mut errors = Vec::new();
        let mut zones: Vec<(Zone, PathBuf)> = Vec::new();
        for (path, origin) in files {
            let at_file = |kind| ZoneError { pos: SourcePos { file: Arc::new(path.clone()), line: 0, col: 0 }, kind };
            let text = if origin.ends_with('.') { origin.clone() } else { format!("{origin}.") };
            let apex = match Name::parse(&text, None) {
                Ok(n) => n.to_lowercase(),
                Err(e) => {
                    errors.push(at_file(ZoneErrorKind::BadName(e)));
                    continue;
                }
            };
            if let Some((_, other)) = zones.iter().find(|(z, _)| z.apex() == &apex) {
                errors.push(at_file(ZoneErrorKind::DuplicateZone { apex, other: other.clone() }));
                continue;
            }
            match Zone::load(&path, &apex, dir) {
                Ok(z) => zones.push((z, path)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() { Ok(ZoneSet::new(zones.into_iter().map(|(z, _)| z).collect())) } else { Err(errors) }
    }

    /// Number of zones served.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when no zone is served.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The zones, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    /// The zone whose apex is exactly `apex_lower` (lowercased wire form).
    pub fn get(&self, apex_lower: &[u8]) -> Option<&Zone> {
        self.zones.get(apex_lower)
    }

    /// The zone with the longest apex at or above `qname` (lowercased wire form).
    pub fn find(&self, qname: &[u8]) -> Option<&Zone> {
        if self.zones.is_empty() {
            return None;
        }
        let labels = label_count(qname);
        if labels < self.min_labels {
            return None;
        }
        let mut i = 0;
        let mut n = labels;
        while n > self.max_labels {
            i += 1 + *qname.get(i)? as usize;
            n -= 1;
        }
        loop {
            let suffix = qname.get(i..)?;
            if let Some(z) = self.zones.get(suffix) {
                return Some(z);
            }
            if n == self.min_labels {
                return None;
            }
            i += 1 + *qname.get(i)? as usize;
            n -= 1;
        }
    }

    /// The served zone directly enclosing `zone`'s apex, if any.
    pub fn find_parent(&self, zone: &Zone) -> Option<&Zone> {
        let apex = zone.apex().as_wire();
        let first = 1 + *apex.first()? as usize;
        self.find(apex.get(first..)?)
    }
}
