//! What can be wrong with the configuration, the zones or the GeoIP database when they are
//! loaded (at start, by `gslbd check`, on reload): one [`LoadError`] per problem, the place
//! it was found plus what kind of problem it is (as ripgrep's globset `Error { glob, kind }`).
//!
//! Rendered for humans at the edge (main.rs, the reload log) with `Display`:
//!
//! ```text
//! gslbd.toml:42:11: error: service "app" names unknown region "fra-3"
//!   hint: define [region.fra-3] or remove it from service.app.regions
//! ```
//!
//! and for machines by the admin API (`POST /v1/reload`) from the fields.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::geoip::GeoError;
use crate::zone::{ZoneError, ZoneErrorKind};

/// Where a problem was found: a file, and the line and column when known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The file (config, zone, GeoIP database or zones directory). Empty: no file is to
    /// blame (an internal fault during a reload).
    pub file: PathBuf,
    /// 1-based; None when the problem is with the file as a whole.
    pub line: Option<u32>,
    /// 1-based; None when only the line is known.
    pub column: Option<u32>,
}

impl Location {
    /// The file as a whole (no line).
    pub fn file(file: &Path) -> Location {
        Location { file: file.to_path_buf(), line: None, column: None }
    }

    /// `line:column` of `file`, both 1-based.
    pub fn at(file: &Path, line: u32, column: u32) -> Location {
        Location { file: file.to_path_buf(), line: Some(line), column: Some(column) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        Ok(())
    }
}

/// One problem found while loading, with where it is.
#[derive(Debug)]
pub struct LoadError {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong.
    pub kind: LoadErrorKind,
}

/// What is wrong. Each kind knows its message (`Display`) and, where one helps, how to fix
/// it ([`LoadErrorKind::hint`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// The config file cannot be read (missing, permissions).
    #[error("cannot read config: {0}")]
    ConfigUnreadable(std::io::Error),
    /// The config file is not TOML, or a key or value type is not what gslbd takes (as the
    /// TOML parser words it).
    #[error("{message}")]
    ConfigSyntax {
        /// The parser's message.
        message: String,
        /// Set for unknown keys: where every key is listed.
        hint: Option<&'static str>,
    },
    /// A setting has a value gslbd cannot use; the message starts with the setting's path
    /// (`regions.fra.check.timeout: ...`), the hint says what would be accepted.
    #[error("{message}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Setting { message: String, hint: Option<String> },
    /// A zone file (or the zones directory) has a problem.
    #[error("{0}")]
    Zone(ZoneErrorKind),
    /// The zones directory holds no `*.zone` file: gslbd would serve nothing.
    #[error("no zone files (*.zone) to serve")]
    NoZones,
    /// The GeoIP database named by `[geoip] database` cannot be used.
    #[error("{0}")]
    Geo(GeoError),
    /// A service's name is in none of the served zones.
    /// `service` is the service's name.
    #[error("service {service} is not inside any served zone")]
    #[allow(missing_docs, reason = "field named in the variant's doc")]
    ServiceOutsideZones { service: String },
    /// A service's name is at or below a delegation (NS records) of its zone, so another
    /// server answers for it.
    /// `service` is the service's name, `zone` the apex of the zone holding the delegation.
    #[error("service {service} is below a delegation in zone {zone}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    ServiceBelowDelegation { service: String, zone: String },
    /// A service's name also has static A, AAAA or CNAME records in its zone.
    /// `service` is the service's name, `zone_file` the file with the records.
    #[error("service {service} collides with static A, AAAA or CNAME records in {}", zone_file.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    ServiceCollides { service: String, zone_file: PathBuf },
    /// A DNSSEC key file in `[dnssec] key_directory` cannot be read or parsed.
    #[error("{0}")]
    DnssecKey(String),
    /// The reload could not run to the end (its task panicked); nothing changed.
    #[error("reload task failed: {0}")]
    ReloadFailed(String),
}

impl LoadErrorKind {
    /// How to fix it, when there is more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoadErrorKind::ConfigSyntax { hint, .. } => hint.map(str::to_string),
            LoadErrorKind::Setting { hint, .. } => hint.clone(),
            LoadErrorKind::NoZones => {
                Some("name each zone file after its origin, e.g. example.com.zone".into())
            }
            LoadErrorKind::Geo(e) => e.hint().map(str::to_string),
            LoadErrorKind::ServiceOutsideZones { .. } => {
                Some("add a zone file for its parent domain, or fix the name".into())
            }
            LoadErrorKind::ServiceCollides { .. } => Some(
                "remove them from the zone file; the service answers A and AAAA at that name (other types, like the apex SOA and NS, may stay)"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl LoadError {
    /// A setting with a bad value at `line:column` of `file`.
    pub fn setting(file: &Path, line: u32, column: u32, message: String, hint: Option<&str>) -> LoadError {
        LoadError {
            location: Location::at(file, line, column),
            kind: LoadErrorKind::Setting { message, hint: hint.map(str::to_string) },
        }
    }

    /// The message without place or hint.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }

    /// How to fix it, when there is more to say than the message ([`LoadErrorKind::hint`]).
    pub fn hint(&self) -> Option<String> {
        self.kind.hint()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.file.as_os_str().is_empty() {
            write!(f, "error: {}", self.kind)?;
        } else {
            write!(f, "{}: error: {}", self.location, self.kind)?;
        }
        if let Some(h) = self.kind.hint() {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl From<ZoneError> for LoadError {
    fn from(e: ZoneError) -> LoadError {
        let p = &e.pos;
        let line = (p.line > 0).then_some(p.line);
        let column = (p.line > 0 && p.col > 0).then_some(p.col);
        LoadError { location: Location { file: p.file.to_path_buf(), line, column }, kind: LoadErrorKind::Zone(e.kind) }
    }
}

impl From<GeoError> for LoadError {
    fn from(e: GeoError) -> LoadError {
        LoadError { location: Location::file(e.path()), kind: LoadErrorKind::Geo(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_place_message_and_hint_as_operators_read_them() {
        let e = LoadError::setting(
            Path::new("/etc/gslbd/gslbd.toml"),
            3,
            15,
            "dns.udp_payload: 70000 is out of range".into(),
            Some("use 512..=65535; 1232 avoids IP fragmentation"),
        );
        assert_eq!(
            e.to_string(),
            "/etc/gslbd/gslbd.toml:3:15: error: dns.udp_payload: 70000 is out of range\n  hint: use 512..=65535; 1232 avoids IP fragmentation"
        );
        let e = LoadError { location: Location::file(Path::new("/z")), kind: LoadErrorKind::NoZones };
        assert_eq!(
            e.to_string(),
            "/z: error: no zone files (*.zone) to serve\n  hint: name each zone file after its origin, e.g. example.com.zone"
        );
        let e = LoadError { location: Location::default(), kind: LoadErrorKind::ReloadFailed("panic".into()) };
        assert_eq!(e.to_string(), "error: reload task failed: panic");
        let l = Location { file: "/z/a.zone".into(), line: Some(4), column: None };
        assert_eq!(l.to_string(), "/z/a.zone:4");
    }
}
