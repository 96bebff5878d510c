//! DNSSEC online signing: zone keys on disk, RRSIGs over RRsets as they are answered, and
//! the per-worker signature cache ([`cache`]).
//!
//! Every RRset an answer carries is signed when it is sent to a query with DO=1, by every
//! key of its zone (several keys at once for rollovers). Signatures are computed over the
//! canonical form (RFC 4034 section 6: owner and rdata names in lower case, RRs sorted by
//! rdata), so the requester's letter case in the answer does not matter. A wildcard answer
//! is signed as the name asked for (as online signers do: no wildcard proof is needed), and
//! denial of existence is compact (RFC 9824), built by `resolve::denial`.
//!
//! Keys live in `[dnssec] key_directory` as `K<zone>.+<alg>+<tag>.private` (our format: the
//! key's PKCS#8 document, readable only by its owner) beside a `.key` file with the DNSKEY
//! in zone-file form. `gslbd dnssec keygen` writes both, `gslbd dnssec ds` prints the DS
//! records for the parent.

pub mod cache;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use crate::load_error::{LoadError, LoadErrorKind, Location};
use crate::name::{Name, label_count};
use crate::rtype;
use crate::zone::ZoneSet;
use crate::zone::store::RRset;

pub use cache::Signer;

/// ECDSA Curve P-256 with SHA-256 (RFC 6605), the default.
pub const ALG_ECDSAP256SHA256: u8 = 13;
/// Ed25519 (RFC 8080).
pub const ALG_ED25519: u8 = 15;
/// DNSKEY flags: zone key + secure entry point (a combined signing key).
pub const FLAGS_CSK: u16 = 257;
/// TTL of the DNSKEY RRset we publish at the apex, and of printed DS records.
pub const DNSKEY_TTL: u32 = 3600;
/// First line of a private key file: tells our format apart from BIND's.
const PRIVATE_FORMAT: &str = "Private-key-format: gslbd-pkcs8-v1";

/// What can be wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file: {0}")]
    /// The file could not be read.
    Unreadable(std::io::Error),
    #[error("not a gslbd private key file: {0}")]
    /// The file is not in gslbd's private key format; says which part is wrong.
    Malformed(&'static str),
    #[error("algorithm {0} is not supported (use 13, ECDSAP256SHA256, or 15, ED25519)")]
    /// A DNSSEC algorithm number gslbd does not sign with.
    Algorithm(u8),
    #[error("the key does not load: {0}")]
    /// The key material did not load (ring's reason).
    Rejected(String),
}

enum KeyPairKind {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One signing key of a zone.
pub struct SigningKey {
    /// DNSSEC algorithm number: 13 (ECDSAP256SHA256) or 15 (ED25519).
    pub algorithm: u8,
    /// Key tag (RFC 4034 appendix B), as RRSIG and DS name the key.
    pub tag: u16,
    /// DNSKEY rdata: flags, protocol 3, algorithm, public key.
    pub dnskey: Vec<u8>,
    pair: KeyPairKind,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(alg {}, tag {})", self.algorithm, self.tag)
    }
}

impl SigningKey {
    /// Loads a key from its PKCS#8 document.
    pub fn from_pkcs8(algorithm: u8, pkcs8: &[u8]) -> Result<SigningKey, KeyError> {
        let (pair, public) = match algorithm {
            ALG_ECDSAP256SHA256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
                    .map_err(|e| KeyError::Rejected(e.to_string()))?;
                // RFC 6605 section 4: x | y, without the uncompressed-point marker 0x04.
                let public = pair.public_key().as_ref().get(1..).unwrap_or_default().to_vec();
                (KeyPairKind::Ecdsa(pair), public)
            }
            ALG_ED25519 => {
                let pair =
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|e| KeyError::Rejected(e.to_string()))?;
                let public = pair.public_key().as_ref().to_vec();
                (KeyPairKind::Ed25519(pair), public)
            }
            other => return Err(KeyError::Algorithm(other)),
        };
        let mut dnskey = Vec::with_capacity(4 + public.len());
        dnskey.extend_from_slice(&FLAGS_CSK.to_be_bytes());
        dnskey.push(3);
        dnskey.push(algorithm);
        dnskey.extend_from_slice(&public);
        Ok(SigningKey { algorithm, tag: key_tag(&dnskey), dnskey, pair })
    }

    fn sign(&self, data: &[u8]) -> Option<Vec<u8>> {
        match &self.pair {
            KeyPairKind::Ecdsa(p) => p.sign(&SystemRandom::new(), data).ok().map(|s| s.as_ref().to_vec()),
            KeyPairKind::Ed25519(p) => Some(p.sign(data).as_ref().to_vec()),
        }
    }
}

/// The keys of one signed zone and the DNSKEY RRset they publish.
#[derive(Debug)]
/// The signing keys of one zone and the DNSKEY RRset they publish.
pub struct ZoneKeys {
    /// The apex, lowercased: the signer name of every RRSIG.
    pub apex: Name,
    /// Every key that signs (each RRset gets one RRSIG per key).
    pub keys: Vec<SigningKey>,
    /// The DNSKEY RRset published at the apex, TTL [`DNSKEY_TTL`].
    pub dnskey: RRset,
}

/// The keys of every signed zone, by lowercased apex. Empty: nothing is signed.
#[derive(Debug, Default)]
pub struct Keys {
    zones: HashMap<Box<[u8]>, Arc<ZoneKeys>, foldhash::fast::RandomState>,
}

impl Keys {
    /// Whether no zone is signed.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The keys of the zone whose lowercased wire-format apex is `apex_lower`.
    pub fn zone(&self, apex_lower: &[u8]) -> Option<&Arc<ZoneKeys>> {
        self.zones.get(apex_lower)
    }

    /// Signed zones' apexes, for logs.
    pub fn apexes(&self) -> impl Iterator<Item = &Name> {
        self.zones.values().map(|z| &z.apex)
    }
}

/// RFC 4034 appendix B.
pub fn key_tag(dnskey: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey.iter().enumerate() {
        ac += if i & 1 == 1 { u32::from(*b) } else { u32::from(*b) << 8 };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// The file name stem of a key: `K<zone>.+<alg>+<tag>` as BIND names them.
pub fn key_stem(apex: &Name, algorithm: u8, tag: u16) -> String {
    format!("K{}+{algorithm:03}+{tag:05}", apex.to_string().to_ascii_lowercase())
}

/// Reads one private key file.
pub fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(KeyError::Unreadable)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(PRIVATE_FORMAT) {
        return Err(KeyError::Malformed("the first line must be \"Private-key-format: gslbd-pkcs8-v1\""));
    }
    let mut algorithm = None;
    let mut pkcs8 = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("Algorithm:") {
            let n = v.split_whitespace().next().and_then(|n| n.parse::<u8>().ok());
            algorithm = Some(n.ok_or(KeyError::Malformed("Algorithm: is not a number"))?);
        } else if let Some(v) = line.strip_prefix("PKCS8:") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .map_err(|_| KeyError::Malformed("PKCS8: is not base64"))?;
            pkcs8 = Some(bytes);
        }
    }
    let algorithm = algorithm.ok_or(KeyError::Malformed("no Algorithm: line"))?;
    let pkcs8 = pkcs8.ok_or(KeyError::Malformed("no PKCS8: line"))?;
    SigningKey::from_pkcs8(algorithm, &pkcs8)
}

/// Loads the keys of every served zone from `dir`: files `K<zone>.+*.private` whose zone is
/// served. A file that cannot be read or parsed is an error at that file (a reload then
/// keeps the old keys). A missing directory means no zone is signed.
pub fn load_keys(dir: &Path, zones: &ZoneSet) -> Result<Keys, Vec<LoadError>> {
    let mut keys = Keys::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(vec![key_error(dir, KeyError::Unreadable(e))]),
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut errors = Vec::new();
    let mut by_zone: HashMap<Vec<u8>, Vec<SigningKey>> = HashMap::new();
    for path in files {
        let Some(file_name) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".private").and_then(|s| s.strip_prefix('K')) else {
            continue;
        };
        let Some((zone, _)) = stem.split_once('+') else {
            continue;
        };
        let Ok(apex) = Name::parse(zone, None) else {
            continue;
        };
        let apex = apex.to_lowercase();
        if zones.get(apex.as_wire()).is_none() {
            continue;
        }
        match read_key_file(&path) {
            Ok(k) => {
                use std::os::unix::fs::PermissionsExt as _;
                if let Ok(meta) = std::fs::metadata(&path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(file = %path.display(), "dnssec: private key readable by others than its owner; chmod 600 it");
                }
                by_zone.entry(apex.as_wire().to_vec()).or_default().push(k)
            }
            Err(e) => errors.push(key_error(&path, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (apex, list) in by_zone {
        let Some(name) = Name::from_wire(&apex) else {
            continue;
        };
        let dnskey = RRset::new(rtype::DNSKEY, DNSKEY_TTL, list.iter().map(|k| &k.dnskey[..]));
        let tags: Vec<String> = list.iter().map(|k| format!("{}/{}", k.algorithm, k.tag)).collect();
        tracing::info!(zone = %name, keys = %tags.join(","), "dnssec: signing");
        keys.zones.insert(apex.into(), Arc::new(ZoneKeys { apex: name, keys: list, dnskey }));
    }
    Ok(keys)
}

fn key_error(path: &Path, e: KeyError) -> LoadError {
    LoadError { location: Location::file(path), kind: LoadErrorKind::DnssecKey(e.to_string()) }
}

/// Writes a new key for `apex` into `dir` (created 0700 if missing; the private file 0600).
/// Returns the key.
pub fn keygen(dir: &Path, apex: &Name, algorithm: u8) -> Result<SigningKey, String> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let rng = SystemRandom::new();
    let pkcs8 = match algorithm {
        ALG_ECDSAP256SHA256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| format!("cannot generate a key: {e}"))?,
        ALG_ED25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("cannot generate a key: {e}"))?,
        other => return Err(KeyError::Algorithm(other).to_string()),
    };
    let key = SigningKey::from_pkcs8(algorithm, pkcs8.as_ref()).map_err(|e| e.to_string())?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    }
    let stem = key_stem(apex, algorithm, key.tag);
    let private = dir.join(format!("{stem}.private"));
    let text = format!(
        "{PRIVATE_FORMAT}\nAlgorithm: {algorithm} ({})\nPKCS8: {}\n",
        algorithm_name(algorithm),
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(|e| format!("{}: cannot create: {e}", private.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: cannot write: {e}", private.display()))?;
    let public = dir.join(format!("{stem}.key"));
    std::fs::write(&public, format!("{}\n", dnskey_line(apex, &key)))
        .map_err(|e| format!("{}: cannot write: {e}", public.display()))?;
    Ok(key)
}

/// The mnemonic of a DNSSEC algorithm number (RFC 8624), as `keygen` prints it.
pub fn algorithm_name(algorithm: u8) -> &'static str {
    match algorithm {
        ALG_ECDSAP256SHA256 => "ECDSAP256SHA256",
        ALG_ED25519 => "ED25519",
        _ => "unknown",
    }
}

/// `example.com. 3600 IN DNSKEY 257 3 13 BASE64`
pub fn dnskey_line(apex: &Name, key: &SigningKey) -> String {
    let public = base64::engine::general_purpose::STANDARD.encode(key.dnskey.get(4..).unwrap_or_default());
    format!("{} {DNSKEY_TTL} IN DNSKEY {FLAGS_CSK} 3 {} {public}", apex.to_string().to_ascii_lowercase(), key.algorithm)
}

/// `example.com. 3600 IN DS TAG ALG 2 HEX`: SHA-256 over owner and DNSKEY rdata (RFC 4509).
pub fn ds_line(apex: &Name, key: &SigningKey) -> String {
    let mut data = apex.to_lowercase().as_wire().to_vec();
    data.extend_from_slice(&key.dnskey);
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("{} {DNSKEY_TTL} IN DS {} {} 2 {hex}", apex.to_string().to_ascii_lowercase(), key.tag, key.algorithm)
}

/// Every key of `apex` in `dir`, in file name order.
pub fn zone_keys_in(dir: &Path, apex: &Name) -> Result<Vec<SigningKey>, String> {
    let prefix = format!("k{}+", apex.to_string().to_ascii_lowercase());
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.to_ascii_lowercase().starts_with(&prefix) && f.ends_with(".private"))
        })
        .collect();
    files.sort();
    files.iter().map(|p| read_key_file(p).map_err(|e| format!("{}: error: {e}", p.display()))).collect()
}

/// A signature validity window: the same for every server that agrees on the week, so a
/// cluster signs over the same window and a cache stays valid across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Signature inception, seconds since the Unix epoch (RFC 4034 section 3.1.5).
    pub inception: u32,
    /// Signature expiration, seconds since the Unix epoch.
    pub expiration: u32,
}

const WEEK: u64 = 7 * 86_400;
#[cfg(test)]
pub(crate) const WEEK_SECS: u64 = WEEK;

impl Validity {
    /// Windows start on Thursdays 00:00 UTC (the Unix epoch was one, as PowerDNS aligns):
    /// inception is the start of the previous week (a week of allowance for clocks behind
    /// ours), expiration two weeks after the current week's start, so a signature made at any
    /// time has at least a week to run.
    pub fn at(unix_seconds: u64) -> Validity {
        let start = unix_seconds / WEEK * WEEK;
        Validity { inception: (start - WEEK.min(start)) as u32, expiration: (start + 2 * WEEK) as u32 }
    }

    /// The window for the current time.
    pub fn now() -> Validity {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Validity::at(now)
    }
}

/// Lowercases the domain names inside rdata of the types RFC 4034 section 6.2 lists (those
/// we serve), in place.
fn canonical_rdata(rtype: u16, rd: &mut [u8]) {
    fn lower_name(b: &mut [u8]) -> usize {
        let mut i = 0;
        while let Some(&len) = b.get(i) {
            if len == 0 {
                return i + 1;
            }
            let end = (i + 1 + len as usize).min(b.len());
            b[i + 1..end].make_ascii_lowercase();
            i = end;
        }
        i
    }
    match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => {
            lower_name(rd);
        }
        rtype::MX => {
            if let Some(rest) = rd.get_mut(2..) {
                lower_name(rest);
            }
        }
        rtype::SRV => {
            if let Some(rest) = rd.get_mut(6..) {
                lower_name(rest);
            }
        }
        rtype::SOA => {
            let m = lower_name(rd);
            if let Some(rest) = rd.get_mut(m..) {
                lower_name(rest);
            }
        }
        _ => {}
    }
}

/// Writes the cache key of an RRset into `out`: owner (lowercased) | type | TTL | then each
/// canonical rdata with its length, sorted. It is also the RRset's part of the data to sign.
pub fn canonical_rrset(owner_lower: &[u8], set: &RRset, ttl: u32, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(owner_lower);
    out.extend_from_slice(&set.rtype.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    if !matches!(set.rtype, rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME | rtype::MX | rtype::SRV | rtype::SOA)
    {
        // No names inside: sort the stored rdata as it is, without copies.
        let mut rdatas: smallvec::SmallVec<[&[u8]; 8]> = set.rdatas().collect();
        rdatas.sort_unstable();
        rdatas.dedup();
        for rd in &rdatas {
            out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            out.extend_from_slice(rd);
        }
        return;
    }
    let mut rdatas: smallvec::SmallVec<[Vec<u8>; 8]> = set
        .rdatas()
        .map(|rd| {
            let mut rd = rd.to_vec();
            canonical_rdata(set.rtype, &mut rd);
            rd
        })
        .collect();
    rdatas.sort();
    rdatas.dedup();
    for rd in &rdatas {
        out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        out.extend_from_slice(rd);
    }
}

/// Signs the RRset whose [`canonical_rrset`] form is `canonical` with every key of `zone`:
/// the RRSIG RRset (one RRSIG per key), or None if a key failed.
pub fn sign(zone: &ZoneKeys, canonical: &[u8], validity: Validity) -> Option<RRset> {
    let owner_len = crate::name::wire_len(canonical)?;
    let (owner, rest) = canonical.split_at(owner_len);
    let rtype = rest.get(..2)?;
    let ttl = rest.get(2..6)?;
    let rdatas = rest.get(6..)?;
    // Labels of the owner, root excluded (we never sign a wildcard owner: synthesized
    // answers are signed as the name asked for).
    let labels = label_count(owner) as u8;
    let mut sigs: smallvec::SmallVec<[Vec<u8>; 2]> = smallvec::SmallVec::new();
    for key in &zone.keys {
        let mut rdata = Vec::with_capacity(18 + zone.apex.as_wire().len() + 64);
        rdata.extend_from_slice(rtype);
        rdata.push(key.algorithm);
        rdata.push(labels);
        rdata.extend_from_slice(ttl);
        rdata.extend_from_slice(&validity.expiration.to_be_bytes());
        rdata.extend_from_slice(&validity.inception.to_be_bytes());
        rdata.extend_from_slice(&key.tag.to_be_bytes());
        rdata.extend_from_slice(zone.apex.as_wire());
        let mut data = rdata.clone();
        let mut at = 0;
        while let Some(len) = rdatas.get(at..at + 2) {
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            let rd = rdatas.get(at..at + 2 + len)?;
            data.extend_from_slice(owner);
            data.extend_from_slice(rtype);
            data.extend_from_slice(&rtype::CLASS_IN.to_be_bytes());
            data.extend_from_slice(ttl);
            data.extend_from_slice(rd);
            at += 2 + len;
        }
        rdata.extend_from_slice(&key.sign(&data)?);
        sigs.push(rdata);
    }
    let ttl = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
    Some(RRset::new(rtype::RRSIG, ttl, sigs.iter().map(|s| &s[..])))
}

#[cfg(test)]
mod tests;
