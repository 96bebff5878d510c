//! GeoIP: where a client address is, from a MaxMind DB (`.mmdb`) file.
//!
//! ```text
//! client address (source or ECS) -> GeoLookup::locate -> Location -> geo policies
//! CSV of networks -> build::build -> .mmdb (`gslbd geoip build`)
//! ```
//!
//! [`MmdbGeo`] reads the GeoLite2/GeoIP2 City and Country schemas. A lookup decodes only the
//! fields a policy uses, borrowed from the database bytes, so it does not allocate.
//! [`build`] writes City-shaped databases from operators' own prefix lists (and our fixture,
//! `geoip/test-city.mmdb`).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{MaxMindDbError, Reader};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub mod build;
#[cfg(test)]
mod tests;

/// Anything that can place an address on the map. Policies take `&dyn GeoLookup` so tests can
/// give them a table instead of a database.
pub trait GeoLookup: Send + Sync {
    /// Where `ip` is, or `None` when the database has nothing for it.
    fn locate(&self, ip: IpAddr) -> Option<Location>;

    /// An id unique to this opened database (never reused in the process), so answers may
    /// be cached per database; 0 means "do not cache".
    fn id(&self) -> u64 {
        0
    }
}

/// Ids for opened databases: a reload opens a new one with a new id, so a cache keyed by
/// the id can never serve an old database's answers.
static NEXT_DATABASE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Continent code: AF AN AS EU NA OC SA.
    pub continent: Code<2>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Code<2>,
    /// The part of the ISO 3166-2 code after the dash: `CA` of US-CA, `ENG` of GB-ENG.
    pub subdivision: Option<Code<3>>,
    /// Latitude and longitude in degrees; `None` for a Country database or a record without
    /// a location.
    pub coordinates: Option<(f64, f64)>,
    /// Length of the matched network in the database, in the family of the queried
    /// address: an IPv4 query gets 0..=32 even though the tree is IPv6. It is the tree's
    /// network, so a /32 with a nested /48 answers for the largest piece of the /32 around
    /// the address that holds only its data (a /41, say): every address in it gets this
    /// same Location, which makes it the ECS scope an answer may claim.
    pub prefix_len: u8,
}

/// A short code of 1 to `N` ASCII letters or digits, stored uppercase and inline: `Copy`, no
/// heap, so a [`Location`] costs nothing to pass around.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code<const N: usize> {
    /// Uppercase ASCII, zero-padded after the last character.
    bytes: [u8; N],
}

impl<const N: usize> Code<N> {
    /// The code for `s` (any case), or `None` if it is empty, longer than `N`, or has a
    /// character other than an ASCII letter or digit.
    pub const fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > N {
            return None;
        }
        let mut bytes = [0u8; N];
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphanumeric() {
                return None;
            }
            bytes[i] = b[i].to_ascii_uppercase();
            i += 1;
        }
        Some(Code { bytes })
    }

    /// The code as text, uppercase.
    pub fn as_str(&self) -> &str {
        let len = self.bytes.iter().position(|&b| b == 0).unwrap_or(N);
        // Only ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..len]).unwrap_or_default()
    }
}

/// `s` is not a code of 1 to `max` ASCII letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a code of 1 to {max} ASCII letters or digits")]
pub struct CodeError {
    /// The code as given.
    pub text: String,
    /// The longest code allowed, in characters (`N` of the [`Code`] it was meant for).
    pub max: usize,
}

impl<const N: usize> TryFrom<&str> for Code<N> {
    type Error = CodeError;
    fn try_from(s: &str) -> Result<Self, CodeError> {
        Code::new(s).ok_or_else(|| CodeError { text: s.to_string(), max: N })
    }
}

impl<const N: usize> std::str::FromStr for Code<N> {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, CodeError> {
        Code::try_from(s)
    }
}

/// Compares ignoring ASCII case, as the code itself is case-insensitive: `us` is `US`.
impl<const N: usize> PartialEq<str> for Code<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str().eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> PartialEq<&str> for Code<N> {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl<const N: usize> fmt::Display for Code<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Code<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a GeoIP database cannot be used. Each names the file, so a config with several
/// databases says which one is wrong; the message itself leaves the path to the caller
/// (`LoadError` renders `path: error: message`).
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// No file at the path.
    /// `path` is the configured database path.
    #[error("GeoIP database not found")]
    #[allow(missing_docs, reason = "field named in the variant's doc")]
    Missing { path: PathBuf },
    /// The file exists but cannot be read.
    /// `path` is the database file, `error` what reading it returned.
    #[error("cannot read GeoIP database: {error}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Unreadable { path: PathBuf, error: std::io::Error },
    /// Not a MaxMind DB file.
    /// `path` is the database file, `error` what the MaxMind DB reader said.
    #[error("not a MaxMind DB (.mmdb) file, or corrupt: {error}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Corrupt { path: PathBuf, error: MaxMindDbError },
    /// A MaxMind DB without country or location data (e.g. an ASN database).
    /// `path` is the database file, `database_type` the type in its metadata (e.g.
    /// `GeoLite2-ASN`).
    #[error("database type {database_type:?} has no country or location data")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    NoGeoData { path: PathBuf, database_type: String },
}

impl GeoError {
    /// The database file this is about.
    pub fn path(&self) -> &Path {
        match self {
            GeoError::Missing { path }
            | GeoError::Unreadable { path, .. }
            | GeoError::Corrupt { path, .. }
            | GeoError::NoGeoData { path, .. } => path,
        }
    }

    /// How to fix it, where there is more to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            GeoError::Missing { .. } => Some("build one with `gslbd geoip build CSV OUT`, or use a GeoLite2-City.mmdb"),
            GeoError::NoGeoData { .. } => Some("use a GeoIP2 or GeoLite2 City or Country database"),
            _ => None,
        }
    }
}

/// A GeoLite2/GeoIP2 City or Country database, read into memory.
///
/// In memory rather than mapped: a file replaced or truncated under a mapping is undefined
/// behaviour, and a City database is small enough (about 60 MB) to hold.
#[derive(Debug)]
pub struct MmdbGeo {
    reader: Reader<Vec<u8>>,
    id: u64,
}

impl MmdbGeo {
    /// Reads the database at `path` and checks that it is a MaxMind DB whose type carries
    /// country data (City, Country, Enterprise). Records themselves are checked when looked
    /// up: a damaged record answers `None`.
    pub fn open(path: &Path) -> Result<MmdbGeo, GeoError> {
        let bytes = std::fs::read(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => GeoError::Missing { path: path.to_path_buf() },
            _ => GeoError::Unreadable { path: path.to_path_buf(), error },
        })?;
        let reader =
            Reader::from_source(bytes).map_err(|error| GeoError::Corrupt { path: path.to_path_buf(), error })?;
        let database_type = &reader.metadata().database_type;
        if !["City", "Country", "Enterprise"].iter().any(|t| database_type.contains(t)) {
            return Err(GeoError::NoGeoData { path: path.to_path_buf(), database_type: database_type.clone() });
        }
        Ok(MmdbGeo { reader, id: NEXT_DATABASE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) })
    }

    /// The `database_type` of the metadata, e.g. `GeoLite2-City`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }
}

impl GeoLookup for MmdbGeo {
    fn id(&self) -> u64 {
        self.id
    }

    fn locate(&self, ip: IpAddr) -> Option<Location> {
        // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: answer as for a.b.c.d,
        // with an IPv4 prefix length.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let found = match self.reader.lookup(ip) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "geoip lookup failed");
                return None;
            }
        };
        let record: Record<'_> = match found.decode() {
            Ok(record) => record?,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "geoip record cannot be decoded");
                return None;
            }
        };
        let network = found.network().ok()?;
        // An IPv4 query answered above the IPv4 subtree (a record covering all of ::/96)
        // comes back as an IPv6 network: for the client that is all of IPv4.
        let prefix_len = match (ip, network.is_ipv4()) {
            (IpAddr::V4(_), false) => 0,
            _ => network.prefix(),
        };
        // Records of anonymous proxies and satellite providers have no `country`; where the
        // block is registered is the best guess left.
        let country = record.country.iso_code.or(record.registered_country.iso_code)?;
        let coordinates = match (record.location.latitude, record.location.longitude) {
            (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                Some((lat, lon))
            }
            _ => None,
        };
        Some(Location {
            continent: Code::new(record.continent.code?)?,
            country: Code::new(country)?,
            subdivision: record.subdivisions.and_then(Code::new),
            coordinates,
            prefix_len,
        })
    }
}

/// The fields of a City or Country record that a [`Location`] needs, borrowed from the
/// database; every other field is skipped without being decoded.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    continent: ContinentRecord<'a>,
    #[serde(borrow, default)]
    country: CountryRecord<'a>,
    #[serde(borrow, default)]
    registered_country: CountryRecord<'a>,
    #[serde(default)]
    location: LocationRecord,
    /// The first (largest) subdivision's code, without collecting the list.
    #[serde(borrow, default, deserialize_with = "first_subdivision")]
    subdivisions: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct ContinentRecord<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct LocationRecord {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct SubdivisionRecord<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

fn first_subdivision<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    struct First;
    impl<'de> Visitor<'de> for First {
        type Value = Option<&'de str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of subdivisions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let first = seq.next_element::<SubdivisionRecord<'de>>()?.and_then(|s| s.iso_code);
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }
    d.deserialize_seq(First)
}

/// Opens the configured database for the policies.
pub fn open(path: &Path) -> Result<std::sync::Arc<dyn GeoLookup>, GeoError> {
    Ok(std::sync::Arc::new(MmdbGeo::open(path)?))
}

/// Slots of the per-thread location cache (a power of two).
const CACHE_SLOTS: usize = 4096;

struct CacheSlot {
    database: u64,
    key: u128,
    location: Option<Location>,
}

thread_local! {
    static CACHE: std::cell::RefCell<Vec<CacheSlot>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `geo.locate(ip)` through a small direct-mapped cache per thread. Resolvers send the same
/// client subnets over and over (an ECS address is already cut to its prefix), so most
/// lookups are answered without walking the database. Keyed by database id: a reload never
/// sees the old database's answers. No lock: each UDP worker has its own cache.
pub fn locate_cached(geo: &dyn GeoLookup, ip: IpAddr) -> Option<Location> {
    let database = geo.id();
    if database == 0 {
        return geo.locate(ip);
    }
    let key = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)) | (1 << 127),
        IpAddr::V6(a) => u128::from(a),
    };
    let h = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let slot = (h >> 52) as usize & (CACHE_SLOTS - 1);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.is_empty() {
            cache.resize_with(CACHE_SLOTS, || CacheSlot { database: 0, key: 0, location: None });
        }
        let entry = &mut cache[slot];
        if entry.database == database && entry.key == key {
            return entry.location;
        }
        let location = geo.locate(ip);
        *entry = CacheSlot { database, key, location };
        location
    })
}
