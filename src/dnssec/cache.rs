//! The signature cache and the budget of fresh signatures, one [`Signer`] per UDP worker.
//!
//! Per worker, not shared: a worker owns its `Signer` outright, so a cache hit is a hash
//! probe with no lock, no atomic and no cache line bouncing between cores; the price is that
//! each worker signs a popular RRset once (a few workers, once per validity window: nothing).
//! A shared lock-free map would save those few signatures and cost every hit an atomic
//! reference count on a shared line.
//!
//! Keyed by the exact RRset (owner in lower case, type, TTL, canonical rdata set), so a GSLB
//! answer shared by thousands of clients is signed once per window; the window comes from
//! the clock alone ([`Validity`]), so an entry stays good until the week turns.
//!
//! Bounded: two generations of at most `capacity` entries each; when the current one is
//! full it becomes the previous one and the oldest is dropped, and a hit in the previous
//! generation is moved forward. RRsets asked for all the time stay; one-off ones (random
//! names) age out.
//!
//! Fresh signatures are limited by a token bucket (`rate` per second, a second of burst).
//! Denials (NSEC records at names that do not exist, one per random name under a flood) may
//! only spend the upper half of the bucket, so positive answers always find tokens: under a
//! random-name flood, denials beyond the budget get SERVFAIL while cached answers, and new
//! positive ones within half the budget, keep flowing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{Validity, ZoneKeys, canonical_rrset, sign};
use crate::zone::store::RRset;

type Map = HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>;

struct Entry {
    validity: Validity,
    rrsig: Arc<RRset>,
}

/// Fresh signatures per second per worker, by default: a quarter or less of what a core
/// makes (20,000 to 45,000 ECDSA P-256 signatures a second, bench/README.md), so a flood
/// of new names leaves most of the worker's time to answering.
pub const DEFAULT_RATE: u32 = 5_000;
/// Entries per generation, by default: two generations of 50,000 small RRsets are a few
/// tens of MB at most.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// What kind of RRset asks for a signature: decides which part of the budget it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Data that exists whoever asks: many queries share it.
    Positive,
    /// Made for the name asked (denials, wildcard answers): one per random name in a flood.
    PerName,
}

/// Counters a worker publishes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SignerStats {
    /// Signatures served from the cache.
    pub hits: u64,
    /// Signatures made now (a cache miss within the budget).
    pub fresh: u64,
    /// Signatures not made: the fresh-signature budget was spent (the answer went unsigned).
    pub refused: u64,
}

/// One UDP worker's signer: its signature cache (two generations, bounded) and its budget
/// of fresh signatures per second. Owned by the worker, so a hit takes no lock.
pub struct Signer {
    current: Map,
    previous: Map,
    capacity: usize,
    /// Identity of the keys the entries were made with (the `Arc<Keys>` address): a reload
    /// with other keys empties the cache.
    keys_id: usize,
    scratch: Vec<u8>,
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// What this signer has done, for metrics.
    pub stats: SignerStats,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new(DEFAULT_RATE, DEFAULT_CAPACITY)
    }
}

impl Signer {
    /// A signer making at most `rate` fresh signatures a second and keeping `capacity`
    /// signatures per generation.
    pub fn new(rate: u32, capacity: usize) -> Signer {
        Signer {
            current: Map::default(),
            previous: Map::default(),
            capacity: capacity.max(1),
            keys_id: 0,
            scratch: Vec::with_capacity(512),
            rate: f64::from(rate.max(1)),
            tokens: f64::from(rate.max(1)),
            refilled: Instant::now(),
            stats: SignerStats::default(),
        }
    }

    /// Follows a reload's budget of fresh signatures per second.
    pub fn set_rate(&mut self, rate: u32) {
        let rate = f64::from(rate.max(1));
        if rate != self.rate {
            self.rate = rate;
            self.tokens = self.tokens.min(rate);
        }
    }

    /// Empties the cache if `keys_id` differs from the keys it was filled with.
    pub fn use_keys(&mut self, keys_id: usize) {
        if keys_id != self.keys_id {
            self.current.clear();
            self.previous.clear();
            self.keys_id = keys_id;
        }
    }

    /// The RRSIG RRset over `set` at `owner_lower` with `ttl`, from the cache or freshly
    /// made. None when the budget for fresh signatures is spent (or signing failed).
    pub fn rrsig(
        &mut self,
        zone: &ZoneKeys,
        owner_lower: &[u8],
        set: &RRset,
        ttl: u32,
        validity: Validity,
        kind: Kind,
    ) -> Option<Arc<RRset>> {
        canonical_rrset(owner_lower, set, ttl, &mut self.scratch);
        if let Some(e) = self.current.get(&self.scratch[..]).filter(|e| e.validity == validity) {
            self.stats.hits += 1;
            return Some(e.rrsig.clone());
        }
        if let Some((k, e)) = self.previous.remove_entry(&self.scratch[..])
            && e.validity == validity
        {
            self.stats.hits += 1;
            let rrsig = e.rrsig.clone();
            self.insert(k, e);
            return Some(rrsig);
        }
        if !self.take_token(kind) {
            self.stats.refused += 1;
            return None;
        }
        let rrsig = Arc::new(sign(zone, &self.scratch, validity)?);
        self.stats.fresh += 1;
        let key: Box<[u8]> = self.scratch[..].into();
        self.insert(key, Entry { validity, rrsig: rrsig.clone() });
        Some(rrsig)
    }

    fn insert(&mut self, key: Box<[u8]>, entry: Entry) {
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, entry);
    }

    fn take_token(&mut self, kind: Kind) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        let floor = if kind == Kind::PerName { self.rate / 2.0 } else { 0.0 };
        if self.tokens >= floor + 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no signature is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::WEEK_SECS;
    use crate::name::Name;
    use crate::rtype;

    /// A zone with one fresh key; the key directory goes when the TempDir does.
    fn zone() -> (ZoneKeys, crate::testutil::TempDir) {
        let dir = crate::testutil::TempDir::new("cache");
        let apex = Name::parse("ex.", None).unwrap();
        let key = crate::dnssec::keygen(dir.path(), &apex, crate::dnssec::ALG_ECDSAP256SHA256).unwrap();
        (ZoneKeys { apex, dnskey: RRset::new(rtype::DNSKEY, 3600, [&key.dnskey[..]]), keys: vec![key] }, dir)
    }

    fn a(last: u8) -> RRset {
        RRset::new(rtype::A, 60, [&[192, 0, 2, last][..]])
    }

    #[test]
    fn one_signature_per_rrset_and_window_whatever_the_region_order() {
        let (zone, _dir) = zone();
        let v = Validity::at(1_795_651_200);
        let mut s = Signer::new(100, 1000);
        let ab = RRset::new(rtype::A, 60, [&[192, 0, 2, 1][..], &[192, 0, 2, 2][..]]);
        let ba = RRset::new(rtype::A, 60, [&[192, 0, 2, 2][..], &[192, 0, 2, 1][..]]);
        let first = s.rrsig(&zone, b"\x03www\x02ex\x00", &ab, 60, v, Kind::Positive).unwrap();
        let second = s.rrsig(&zone, b"\x03www\x02ex\x00", &ba, 60, v, Kind::Positive).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "same rdata set in another order: one signature");
        assert_eq!(s.stats, SignerStats { hits: 1, fresh: 1, refused: 0 });
        // Another TTL, owner or window is another RRSIG.
        s.rrsig(&zone, b"\x03www\x02ex\x00", &ab, 30, v, Kind::Positive).unwrap();
        s.rrsig(&zone, b"\x03api\x02ex\x00", &ab, 60, v, Kind::Positive).unwrap();
        s.rrsig(&zone, b"\x03www\x02ex\x00", &ab, 60, Validity::at(1_795_651_200 + WEEK_SECS), Kind::Positive).unwrap();
        assert_eq!(s.stats.fresh, 4);
        // New keys empty the cache.
        s.use_keys(42);
        assert!(s.is_empty());
    }

    #[test]
    fn a_flood_of_new_names_cannot_starve_cached_or_positive_answers() {
        let (zone, _dir) = zone();
        let v = Validity::at(1_795_651_200);
        let mut s = Signer::new(10, 1000);
        let cached = s.rrsig(&zone, b"\x03www\x02ex\x00", &a(1), 60, v, Kind::Positive).unwrap();
        // Random names: only the upper half of the budget (here 10/s, a full bucket).
        let mut denied = 0;
        for i in 0..100u8 {
            let name = [1, b'a' + (i % 26), 1, b'0' + i / 26, 2, b'e', b'x', 0];
            if s.rrsig(&zone, &name, &a(2), 60, v, Kind::PerName).is_none() {
                denied += 1;
            }
        }
        assert!((94..=96).contains(&denied), "about half of a 10-token bucket for new names: {denied}");
        // Cached answers need no token; new positive data still finds the reserved half.
        let again = s.rrsig(&zone, b"\x03www\x02ex\x00", &a(1), 60, v, Kind::Positive).unwrap();
        assert!(Arc::ptr_eq(&cached, &again));
        assert!(s.rrsig(&zone, b"\x03api\x02ex\x00", &a(3), 60, v, Kind::Positive).is_some());
        // A reload lowers the budget: the bucket shrinks with it at once.
        s.set_rate(1);
        assert!(s.rrsig(&zone, b"\x03new\x02ex\x00", &a(4), 60, v, Kind::Positive).is_some());
        assert!(s.rrsig(&zone, b"\x04new2\x02ex\x00", &a(4), 60, v, Kind::Positive).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_asked_for() {
        let (zone, _dir) = zone();
        let v = Validity::at(1_795_651_200);
        let mut s = Signer::new(10_000, 4);
        let hot = b"\x03hot\x02ex\x00";
        s.rrsig(&zone, hot, &a(1), 60, v, Kind::Positive).unwrap();
        for i in 0..20u8 {
            s.rrsig(&zone, &[1, b'a' + i, 2, b'e', b'x', 0], &a(2), 60, v, Kind::Positive).unwrap();
            s.rrsig(&zone, hot, &a(1), 60, v, Kind::Positive).unwrap();
            assert!(s.len() <= 8);
        }
        assert_eq!(s.stats.fresh, 21, "the hot RRset was signed once");
    }
}
