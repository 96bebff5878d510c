//! GeoIP lookups (placeholder API; the MaxMind reader lands with the geoip module).

use std::net::IpAddr;

/// A two or three letter code held inline (continent, country, subdivision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Code<N> {
    pub fn new(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > N || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; N];
        for (d, c) in bytes.iter_mut().zip(s.bytes()) {
            *d = c.to_ascii_uppercase();
        }
        Some(Code { bytes, len: s.len() as u8 })
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// Where a client is, as far as the database knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub continent: Code<2>,
    pub country: Code<2>,
    pub subdivision: Option<Code<3>>,
    pub coordinates: Option<(f64, f64)>,
    pub prefix_len: u8,
}

pub trait GeoLookup: Send + Sync {
    fn locate(&self, ip: IpAddr) -> Option<Location>;
}

/// Opens a GeoIP database (placeholder until the MaxMind reader lands).
pub fn open(path: &std::path::Path) -> Result<std::sync::Arc<dyn GeoLookup>, String> {
    Err(format!("{}: GeoIP databases are not supported yet", path.display()))
}
