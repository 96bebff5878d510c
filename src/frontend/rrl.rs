//! Response rate limiting (RRL) for UDP answers, per client prefix, as BIND 9, Knot and NSD
//! do it: a spoofed flood makes an authoritative server send its answers to a victim, and
//! RRL caps how many a single network can get, while a real client there still gets some
//! answers and, every `slip`th time, an empty truncated one (TC=1) that makes it retry over
//! TCP, which a spoofer cannot do and which is never limited.
//!
//! # The model
//!
//! Each client prefix (`ipv4_prefix_length`, `ipv6_prefix_length` bits of the packet's source
//! address; IPv4-mapped IPv6 counts as IPv4; ECS plays no part, since the spoofer controls the
//! source, not the option) has two accounts, one for error responses (NXDOMAIN, REFUSED,
//! FORMERR) at `errors_per_second` and one for every other response at
//! `responses_per_second` (r below). It is BIND's account (`lib/ns/rrl.c`), in responses:
//!
//! - a new account starts with r: one second's allowance;
//! - every whole second since the last credit adds r, up to r (so no burst above one
//!   second's allowance, however long the prefix was quiet);
//! - every response debits 1, limited ones too; a response is sent while the balance stays
//!   at or above 0, and limited below it;
//! - the balance never goes below -(window - 1 s) × r: a prefix that kept asking for more
//!   must stay under r for up to `window` before it is answered again, i.e. the rate that
//!   counts is the one averaged over `window` seconds. With `window = "1s"` this is a plain
//!   token bucket: r answers per second, the rest limited. (BIND's floor is -window × r,
//!   so there a prefix that keeps flooding at more than twice the rate gets no answer at all
//!   while it floods, even with a window of 1 s; here it gets r a second with a 1 s window.)
//!
//! Unlike BIND, which keeps an account per (prefix, query name and type) for answers, gslbd
//! keeps one per prefix: stricter for a resolver asking many names, and what a GSLB zone of a
//! few names needs.
//!
//! A limited response is dropped, or every `slip`th one is sent empty with TC=1; with
//! `log_only` it is counted and logged but sent.
//!
//! # The table
//!
//! One [`Limiter`] per UDP worker, never shared, so no lock and no shared cache line on the
//! query path. It is a fixed array of `table_size` 32-byte entries allocated at start (or
//! when a reload changes the size), hashed with a per-process random seed so a flood of
//! chosen prefixes cannot aim at one spot, with open addressing over a window of
//! [`PROBE`] neighbouring entries. A prefix not in its window takes a free entry there, else
//! the one used least recently, sparing prefixes being limited: the table never grows, and a
//! flood of distinct prefixes evicts idle entries, not a prefix being limited (which would
//! come back with a full allowance). Exempt clients never take an entry. The clock is read
//! once per batch ([`Limiter::tick`]).
//!
//! With `dns.udp_steering = "hash"` the kernel picks a worker by hashing the client's address
//! and port: one client socket always reaches the same worker, but a prefix whose packets come
//! from many ports (or addresses) is spread over the workers; with `"cpu"` each packet goes to
//! the worker of the CPU that received it. Either way a prefix gets at most workers × rate (a
//! spoofed flood from random ports: about that); set `responses_per_second` with that in mind
//! (docs/operations.md says why the rate is not divided).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::rrl::RrlConfig;

/// Neighbouring entries a prefix may live in: two cache lines of 32-byte entries.
pub const PROBE: usize = 4;

/// What to do with one UDP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as it is.
    Send,
    /// Send it empty, with TC=1 (the client retries over TCP).
    Slip,
    /// Send nothing.
    Drop,
}

/// A prefix starts or stops being limited: one log line each, written off the query path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The client prefix (`ipv4_prefix_length` or `ipv6_prefix_length` bits of the source).
    pub prefix: IpNet,
    /// The error account (NXDOMAIN, REFUSED, FORMERR), else the responses account.
    pub errors: bool,
    /// True when limiting starts, false when it stops (a window after the last limited response).
    pub started: bool,
    /// Limiting was only pretended (`log_only`).
    pub log_only: bool,
}

/// Counts since start, owned by the worker and published to the metrics once per batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Limited responses dropped.
    pub dropped: u64,
    /// Limited responses sent empty with TC=1 (slipped).
    pub slipped: u64,
    /// With `log_only`: what would have been dropped or slipped.
    pub would_drop: u64,
    /// With `log_only`: what would have been slipped.
    pub would_slip: u64,
    /// Entries in use, and entries of prefixes being limited now.
    pub entries: u64,
    /// Entries of prefixes being limited now.
    pub limited_prefixes: u64,
    /// Start/stop events lost because the log queue was full.
    pub events_lost: u64,
    /// Entries in the table.
    pub capacity: u64,
}

impl Stats {
    /// As the metrics keep them: `metrics::RRL_SERIES` in order.
    pub fn as_array(&self) -> [u64; 8] {
        [
            self.dropped,
            self.slipped,
            self.would_drop,
            self.would_slip,
            self.events_lost,
            self.entries,
            self.limited_prefixes,
            self.capacity,
        ]
    }
}

const OCCUPIED: u8 = 1;
const V6: u8 = 2;
const ERRORS: u8 = 4;

/// One account. `credited`, `seen` and `limited_at` are milliseconds since the limiter's
/// epoch, wrapping after 49 days (only differences of recent times are used).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Entry {
    /// The prefix: an IPv4 address, or the upper 64 bits of an IPv6 one, masked.
    key: u64,
    /// The balance includes every credit up to this time (advanced in whole seconds).
    credited: u32,
    /// Last response: the least recently seen entry of a window is replaced first.
    seen: u32,
    /// Last limited response: the prefix stops being limited a window after it.
    limited_at: u32,
    balance: i32,
    /// Limited responses since the last slip.
    slips: u16,
    tag: u8,
    is_limited: bool,
}

/// One UDP worker's rate limiter; see the module documentation for the model.
pub struct Limiter {
    cfg: Arc<RrlConfig>,
    slots: Box<[Entry]>,
    hasher: foldhash::quality::FixedState,
    epoch: Instant,
    now: u32,
    last_sweep: u32,
    events: Option<SyncSender<Event>>,
    /// Counts since start; the worker publishes them to the metrics once per batch.
    pub stats: Stats,
}

/// A random seed per process: prefixes a flood chooses cannot be aimed at one table window.
pub fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
}

impl Limiter {
    /// A limiter with an empty table of `cfg.table_size` entries; `events` receives the
    /// start/stop events (never blocking: a full queue loses the event, counted).
    pub fn new(cfg: Arc<RrlConfig>, seed: u64, epoch: Instant, events: Option<SyncSender<Event>>) -> Limiter {
        let cfg_size = cfg.table_size.max(PROBE);
        Limiter {
            slots: vec![Entry::default(); cfg.table_size.max(PROBE)].into_boxed_slice(),
            cfg,
            hasher: foldhash::quality::FixedState::with_seed(seed),
            epoch,
            now: 0,
            last_sweep: 0,
            events,
            stats: Stats { capacity: cfg_size as u64, ..Stats::default() },
        }
    }

    /// The settings the limiter runs with now.
    pub fn config(&self) -> &Arc<RrlConfig> {
        &self.cfg
    }

    /// Takes new settings (a reload). The table is kept unless its size changed.
    pub fn reconfigure(&mut self, cfg: Arc<RrlConfig>) {
        if cfg.table_size != self.cfg.table_size {
            self.slots = vec![Entry::default(); cfg.table_size.max(PROBE)].into_boxed_slice();
            self.stats.entries = 0;
            self.stats.limited_prefixes = 0;
            self.stats.capacity = self.slots.len() as u64;
        }
        self.cfg = cfg;
    }

    /// Reads the clock for a batch of queries; about once a second, ends the limiting of
    /// prefixes that were not limited for a window.
    pub fn tick(&mut self, now: Instant) {
        self.now = now.saturating_duration_since(self.epoch).as_millis() as u32;
        if self.stats.limited_prefixes > 0 && self.now.wrapping_sub(self.last_sweep) >= 1000 {
            self.last_sweep = self.now;
            self.sweep();
        }
    }

    fn window_ms(&self) -> u32 {
        (self.cfg.window.as_millis() as u32).max(1000)
    }

    fn sweep(&mut self) {
        let window = self.window_ms();
        for i in 0..self.slots.len() {
            let e = self.slots[i];
            if e.is_limited && self.now.wrapping_sub(e.limited_at) >= window {
                self.slots[i].is_limited = false;
                self.stats.limited_prefixes -= 1;
                self.emit(&e, false);
            }
        }
    }

    /// The account of `client` for this kind of response, as (key, tag).
    fn account(&self, client: IpAddr, errors: bool) -> (u64, u8) {
        let kind = if errors { ERRORS } else { 0 };
        match crate::addr::canonical(client) {
            IpAddr::V4(a) => {
                let mask = u32::MAX << (32 - u32::from(self.cfg.ipv4_prefix_length.clamp(1, 32)));
                (u64::from(u32::from(a) & mask), OCCUPIED | kind)
            }
            IpAddr::V6(a) => {
                let mask = u64::MAX << (64 - u32::from(self.cfg.ipv6_prefix_length.clamp(1, 64)));
                (((u128::from(a) >> 64) as u64) & mask, OCCUPIED | V6 | kind)
            }
        }
    }

    /// The entry of (key, tag): found in its window, else a free one there, else the least
    /// recently seen one there, replaced.
    fn entry(&mut self, key: u64, tag: u8, rate: i32) -> usize {
        use std::hash::BuildHasher;
        let n = self.slots.len();
        let h = self.hasher.hash_one((key, tag));
        let start = ((u128::from(h) * n as u128) >> 64) as usize;
        let mut victim = start;
        let mut victim_rank = 0u64;
        for j in 0..PROBE {
            let i = (start + j) % n;
            let e = &self.slots[i];
            if e.tag == tag && e.key == key {
                return i;
            }
            // Free first, then entries not being limited, then the least recently seen.
            let rank = if e.tag & OCCUPIED == 0 {
                u64::MAX
            } else {
                (u64::from(!e.is_limited) << 32) | u64::from(self.now.wrapping_sub(e.seen))
            };
            if j == 0 || rank > victim_rank {
                victim = i;
                victim_rank = rank;
            }
        }
        let old = self.slots[victim];
        if old.tag & OCCUPIED == 0 {
            self.stats.entries += 1;
        } else if old.is_limited {
            self.stats.limited_prefixes -= 1;
            self.emit(&old, false);
        }
        self.slots[victim] = Entry {
            key,
            credited: self.now,
            seen: self.now,
            limited_at: 0,
            balance: rate,
            slips: 0,
            tag,
            is_limited: false,
        };
        victim
    }

    /// Decides one UDP response to `client` (the packet's source); `errors` for NXDOMAIN,
    /// REFUSED and FORMERR. Counts what it decided in [`Limiter::stats`].
    pub fn check(&mut self, client: IpAddr, errors: bool) -> Verdict {
        let cfg = &self.cfg;
        let rate = if errors { cfg.errors_per_second } else { cfg.responses_per_second }.clamp(1, 1_000_000) as i32;
        let floor = -(rate.saturating_mul(self.window_ms() as i32 / 1000 - 1));
        // Scanned for every response: exempt lists are a handful of networks.
        if !cfg.exempt.is_empty() && cfg.exempt.iter().any(|net| net.contains(&crate::addr::canonical(client))) {
            return Verdict::Send;
        }
        let (key, tag) = self.account(client, errors);
        let i = self.entry(key, tag, rate);
        let now = self.now;
        let e = &mut self.slots[i];
        let age = now.wrapping_sub(e.credited);
        if age >= 1000 {
            let secs = age / 1000;
            let credit = i64::from(secs) * i64::from(rate);
            e.balance = (i64::from(e.balance) + credit).min(i64::from(rate)) as i32;
            e.credited = e.credited.wrapping_add(secs * 1000);
        }
        e.seen = now;
        e.balance -= 1;
        if e.balance >= 0 {
            return Verdict::Send;
        }
        e.balance = e.balance.max(floor);
        e.limited_at = now;
        let slip = self.cfg.slip;
        let verdict = if slip == 0 {
            Verdict::Drop
        } else {
            e.slips += 1;
            if e.slips >= u16::from(slip) {
                e.slips = 0;
                Verdict::Slip
            } else {
                Verdict::Drop
            }
        };
        if !e.is_limited {
            e.is_limited = true;
            let e = *e;
            self.stats.limited_prefixes += 1;
            self.emit(&e, true);
        }
        match (verdict, self.cfg.log_only) {
            (Verdict::Slip, false) => self.stats.slipped += 1,
            (Verdict::Slip, true) => self.stats.would_slip += 1,
            (_, false) => self.stats.dropped += 1,
            (_, true) => self.stats.would_drop += 1,
        }
        if self.cfg.log_only { Verdict::Send } else { verdict }
    }

    fn emit(&mut self, e: &Entry, started: bool) {
        let Some(tx) = &self.events else { return };
        let prefix = if e.tag & V6 != 0 {
            let len = self.cfg.ipv6_prefix_length.min(64);
            IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(u128::from(e.key) << 64), len))
        } else {
            let len = self.cfg.ipv4_prefix_length.min(32);
            IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(e.key as u32), len))
        };
        let event = Event { prefix, errors: e.tag & ERRORS != 0, started, log_only: self.cfg.log_only };
        if tx.try_send(event).is_err() {
            self.stats.events_lost += 1;
        }
    }
}

/// Sets TC=1 in an encoded response (a slip: sent without records, so the client asks again
/// over TCP).
pub fn mark_truncated(out: &mut [u8]) {
    if let Some(flags) = out.get_mut(2) {
        *flags |= 0x02;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(f: impl FnOnce(&mut RrlConfig)) -> Arc<RrlConfig> {
        let mut c = RrlConfig { window: Duration::from_secs(1), table_size: 1024, ..RrlConfig::default() };
        f(&mut c);
        Arc::new(c)
    }

    /// A limiter at time 0 of its own clock; `at(ms)` moves the clock.
    struct Clock {
        limiter: Limiter,
        epoch: Instant,
    }

    impl Clock {
        fn new(cfg: Arc<RrlConfig>) -> Clock {
            Clock::with_events(cfg, None)
        }
        fn with_events(cfg: Arc<RrlConfig>, events: Option<SyncSender<Event>>) -> Clock {
            let epoch = Instant::now();
            let mut limiter = Limiter::new(cfg, 42, epoch, events);
            limiter.tick(epoch);
            Clock { limiter, epoch }
        }
        fn at(&mut self, ms: u64) -> &mut Limiter {
            self.limiter.tick(self.epoch + Duration::from_millis(ms));
            &mut self.limiter
        }
        /// Verdicts of `n` responses to `ip` at `ms`, as a string: S(end), T(runcated), D(rop).
        fn run(&mut self, ms: u64, ip: &str, errors: bool, n: usize) -> String {
            let ip: IpAddr = ip.parse().unwrap();
            let l = self.at(ms);
            (0..n)
                .map(|_| match l.check(ip, errors) {
                    Verdict::Send => 'S',
                    Verdict::Slip => 'T',
                    Verdict::Drop => 'D',
                })
                .collect()
        }
    }

    #[test]
    fn slip_sends_every_nth_limited_response_truncated() {
        // (slip, verdicts of 8 responses at 3 per second)
        let cases = [(0, "SSSDDDDD"), (1, "SSSTTTTT"), (2, "SSSDTDTD"), (3, "SSSDDTDD"), (10, "SSSDDDDD")];
        for (slip, want) in cases {
            let mut c = Clock::new(cfg(|c| {
                c.responses_per_second = 3;
                c.slip = slip;
            }));
            assert_eq!(c.run(0, "192.0.2.1", false, 8), want, "slip {slip}");
        }
    }

    /// (at ms, responses, verdicts)
    type Steps<'a> = &'a [(u64, usize, &'a str)];

    #[test]
    fn the_balance_refills_by_the_rate_each_whole_second_up_to_one_second() {
        // (window s, steps of (ms, responses) -> verdicts), rate 3, slip 0
        let cases: [(u64, Steps<'_>); 4] = [
            // window 1: a token bucket of 3 per second, burst 3
            (1, &[(0, 5, "SSSDD"), (999, 1, "D"), (1000, 4, "SSSD"), (2500, 1, "S"), (3100, 4, "SSSD")]),
            // a long pause refills one second's allowance, no more
            (1, &[(0, 3, "SSS"), (60_000, 5, "SSSDD")]),
            // window 3: a flood leaves a debt of (3 - 1) x 3 that takes two seconds to repay
            (3, &[(0, 100, &format!("SSS{}", "D".repeat(97))), (1000, 1, "D"), (2000, 1, "D"), (3000, 1, "S")]),
            // below the rate nothing is ever limited
            (3, &[(0, 2, "SS"), (1000, 3, "SSS"), (2000, 3, "SSS"), (3000, 3, "SSS")]),
        ];
        for (window, steps) in cases {
            let mut c = Clock::new(cfg(|c| {
                c.responses_per_second = 3;
                c.slip = 0;
                c.window = Duration::from_secs(window);
            }));
            for &(ms, n, want) in steps {
                assert_eq!(c.run(ms, "198.51.100.7", false, n), want, "window {window}s, at {ms} ms");
            }
        }
    }

    #[test]
    fn errors_have_their_own_lower_account() {
        let mut c = Clock::new(cfg(|c| {
            c.responses_per_second = 4;
            c.errors_per_second = 2;
            c.slip = 0;
        }));
        assert_eq!(c.run(0, "192.0.2.1", true, 3), "SSD");
        assert_eq!(c.run(0, "192.0.2.1", false, 5), "SSSSD", "errors did not use up the answers");
        assert_eq!(c.run(0, "192.0.2.1", true, 1), "D");
        assert_eq!(c.limiter.stats.dropped, 3);
    }

    #[test]
    fn clients_are_limited_by_prefix_and_mapped_ipv4_is_ipv4() {
        // (config v4/v6 length, first client, second client, same account?)
        let cases = [
            (24, 56, "192.0.2.1", "192.0.2.254", true),
            (24, 56, "192.0.2.1", "192.0.3.1", false),
            (32, 56, "192.0.2.1", "192.0.2.2", false),
            (16, 56, "192.0.2.1", "192.0.200.9", true),
            (24, 56, "::ffff:192.0.2.1", "192.0.2.9", true),
            (24, 56, "2001:db8:0:ab00::1", "2001:db8:0:abff:ffff::1", true),
            (24, 56, "2001:db8:0:ab00::1", "2001:db8:0:ac00::1", false),
            (24, 64, "2001:db8::1", "2001:db8::ffff:1", true),
            (24, 64, "2001:db8::1", "2001:db8:0:1::1", false),
            // the same bits in another family are another prefix
            (32, 32, "192.0.2.1", "c000:0201::", false),
        ];
        for (v4, v6, a, b, same) in cases {
            let mut c = Clock::new(cfg(|c| {
                c.responses_per_second = 1;
                c.ipv4_prefix_length = v4;
                c.ipv6_prefix_length = v6;
            }));
            assert_eq!(c.run(0, a, false, 1), "S");
            let want = if same { "D" } else { "S" };
            assert_eq!(c.run(0, b, false, 1), want, "/{v4} /{v6}: {a} then {b}");
        }
    }

    #[test]
    fn exempt_prefixes_are_never_limited() {
        let mut c = Clock::new(cfg(|c| {
            c.responses_per_second = 1;
            c.exempt = vec!["192.0.2.0/25".parse().unwrap()];
        }));
        assert_eq!(c.run(0, "192.0.2.1", false, 50), "S".repeat(50));
        assert_eq!(c.run(0, "::ffff:192.0.2.1", false, 5), "SSSSS");
        assert_eq!(c.run(0, "192.0.2.200", false, 3), "SDT", "the rest of the /24 shares the account");
        assert_eq!(c.limiter.stats.limited_prefixes, 1);
    }

    #[test]
    fn log_only_limits_nothing_and_counts_what_it_would_have() {
        let mut c = Clock::new(cfg(|c| {
            c.responses_per_second = 2;
            c.log_only = true;
        }));
        assert_eq!(c.run(0, "192.0.2.1", false, 7), "SSSSSSS");
        let s = c.limiter.stats;
        assert_eq!((s.dropped, s.slipped, s.would_drop, s.would_slip), (0, 0, 3, 2));
    }

    #[test]
    fn one_event_when_a_prefix_starts_and_one_a_window_after_it_stops() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut c = Clock::with_events(
            cfg(|c| {
                c.responses_per_second = 1;
                c.window = Duration::from_secs(2);
            }),
            Some(tx),
        );
        c.run(0, "192.0.2.1", false, 100);
        c.run(1500, "192.0.2.1", false, 100);
        // At 3000 the prefix is answered again, but its last limited response was 1.5 s ago.
        assert_eq!(c.run(3000, "192.0.2.1", false, 1), "S");
        let got: Vec<Event> = rx.try_iter().collect();
        let start = Event { prefix: "192.0.2.0/24".parse().unwrap(), errors: false, started: true, log_only: false };
        assert_eq!(got, [start], "one start, no stop within a window of the last limited response");
        c.at(4000);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [Event { started: false, ..start }]);
        assert_eq!(c.limiter.stats.limited_prefixes, 0);
    }

    #[test]
    fn a_full_table_replaces_idle_entries_and_keeps_a_limited_prefix() {
        let mut c = Clock::new(cfg(|c| {
            c.responses_per_second = 2;
            c.slip = 0;
            c.table_size = 64;
        }));
        assert_eq!(c.run(0, "203.0.113.1", false, 3), "SSD");
        // A flood of 10,000 distinct /24s, each asking once, while the limited prefix keeps
        // asking: the table stays at its size and the prefix stays limited.
        for i in 0..10_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from((10 << 24) | (i << 8)));
            let l = c.at(u64::from(i / 100));
            assert_eq!(l.check(ip, false), Verdict::Send);
            if i % 3 == 0 {
                assert_eq!(l.check("203.0.113.1".parse().unwrap(), false), Verdict::Drop, "at {i}");
            }
        }
        let s = c.limiter.stats;
        assert_eq!((s.entries, s.limited_prefixes), (64, 1));
        assert_eq!(c.limiter.slots.len(), 64);
    }
}
