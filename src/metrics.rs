//! Counters for Prometheus, written by the query path without locks.
//!
//! DNS response counters are sharded: each UDP worker (and the TCP server) owns a shard of
//! plain atomics, so two workers never write the same cache line. Answer counters per
//! (service, region) are atomics handed out by name from a registry that outlives reloads,
//! so a reload does not reset them. Everything else (probes, health transitions, reloads,
//! mode changes) happens off the query path and is counted in the registry directly.
//! `render()` writes the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::answer::{Transport, rcode};
use crate::rtype;

/// Query types counted by name; the rest are `other`.
const QTYPES: [(u16, &str); 12] = [
    (rtype::A, "A"),
    (rtype::AAAA, "AAAA"),
    (rtype::CNAME, "CNAME"),
    (rtype::MX, "MX"),
    (rtype::TXT, "TXT"),
    (rtype::NS, "NS"),
    (rtype::SOA, "SOA"),
    (rtype::SRV, "SRV"),
    (rtype::PTR, "PTR"),
    (rtype::CAA, "CAA"),
    (rtype::ANY, "ANY"),
    (0, "other"),
];
const RCODES: [(u16, &str); 9] = [
    (rcode::NOERROR, "NOERROR"),
    (rcode::FORMERR, "FORMERR"),
    (rcode::SERVFAIL, "SERVFAIL"),
    (rcode::NXDOMAIN, "NXDOMAIN"),
    (rcode::NOTIMP, "NOTIMP"),
    (rcode::REFUSED, "REFUSED"),
    (rcode::NOTAUTH, "NOTAUTH"),
    (rcode::BADVERS, "BADVERS"),
    (u16::MAX, "other"),
];
const SHARDS: usize = 64;

fn qtype_index(qtype: u16) -> usize {
    QTYPES.iter().position(|&(t, _)| t == qtype).unwrap_or(QTYPES.len() - 1)
}

fn rcode_index(rc: u16) -> usize {
    RCODES.iter().position(|&(r, _)| r == rc).unwrap_or(RCODES.len() - 1)
}

/// Cells per sharded counter; workers beyond this share cells (still correct, just slower).
const CELLS: usize = 8;

#[repr(align(128))]
#[derive(Default, Debug)]
struct Cell(AtomicU64);

/// A counter split into per-worker cells on their own cache lines: two UDP workers counting
/// answers for the same (service, region) never write the same line.
#[derive(Default, Debug)]
pub struct Sharded {
    cells: [Cell; CELLS],
}

impl Sharded {
    pub fn add(&self, shard: usize, n: u64) {
        self.cells[shard % CELLS].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// One worker's DNS counters. Padded so shards do not share cache lines.
#[repr(align(128))]
pub struct DnsShard {
    /// Which worker: picks its cell in sharded counters.
    pub index: usize,
    /// [transport][rcode][qtype]
    responses: [[[AtomicU64; QTYPES.len()]; RCODES.len()]; 2],
    dropped: AtomicU64,
    /// Datagrams this UDP worker received (the spread over workers shows steering skew).
    datagrams: AtomicU64,
    /// Response rate limiting, [`RRL_SERIES`] in order; the worker adds what changed once per
    /// batch (wrapping: gauges may go down), as workers of several addresses share a shard.
    rrl: [AtomicU64; 8],
}

/// The RRL series a shard keeps: (metric, labels, type). Counters first, then gauges.
pub const RRL_SERIES: [(&str, &str, &str); 8] = [
    ("gslbd_rrl_limited_responses_total", "action=\"dropped\"", "counter"),
    ("gslbd_rrl_limited_responses_total", "action=\"slipped\"", "counter"),
    ("gslbd_rrl_limited_responses_total", "action=\"would_drop\"", "counter"),
    ("gslbd_rrl_limited_responses_total", "action=\"would_slip\"", "counter"),
    ("gslbd_rrl_log_events_lost_total", "", "counter"),
    ("gslbd_rrl_table_entries", "", "gauge"),
    ("gslbd_rrl_limited_prefixes", "", "gauge"),
    ("gslbd_rrl_table_capacity", "", "gauge"),
];

impl DnsShard {
    fn new(index: usize) -> Self {
        DnsShard {
            index,
            responses: std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))),
            dropped: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            rrl: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts a batch of `n` datagrams received by a UDP worker (one add per batch).
    pub fn received(&self, n: usize) {
        self.datagrams.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts one response sent.
    pub fn response(&self, transport: Transport, rc: u16, qtype: u16) {
        let t = usize::from(transport == Transport::Tcp);
        self.responses[t][rcode_index(rc)][qtype_index(qtype)].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the change of a worker's RRL figures since it last published them (`now` and
    /// `before` in [`RRL_SERIES`] order).
    pub fn rrl_changed(&self, before: &[u64; 8], now: &[u64; 8]) {
        for ((cell, b), n) in self.rrl.iter().zip(before).zip(now) {
            if n != b {
                cell.fetch_add(n.wrapping_sub(*b), Ordering::Relaxed);
            }
        }
    }

    /// Counts a packet dropped without an answer (too short, or a response).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The shard for worker `i` (UDP workers count from 0; the TCP server uses the last shard).
pub fn dns_shard(i: usize) -> &'static DnsShard {
    &REGISTRY.dns[i % SHARDS]
}

/// UDP workers per listen address, for rendering the per-worker series (every worker gets
/// one, including those that received nothing).
static UDP_WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn set_udp_workers(n: usize) {
    UDP_WORKERS.fetch_max(n.min(SHARDS - 1), Ordering::Relaxed);
}

pub fn tcp_shard() -> &'static DnsShard {
    &REGISTRY.dns[SHARDS - 1]
}

/// Counters and gauges outside the query path, by metric name and label set.
#[derive(Default)]
struct Slow {
    counters: BTreeMap<(&'static str, String), u64>,
    gauges: BTreeMap<(&'static str, String), f64>,
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    /// Histograms: (name, labels) -> (bucket counts, sum, count).
    histograms: BTreeMap<(&'static str, String), (Vec<u64>, f64, u64)>,
}

struct Registry {
    dns: Vec<DnsShard>,
    answers: Mutex<BTreeMap<(String, String), Arc<Sharded>>>,
    slow: Mutex<Slow>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    dns: (0..SHARDS).map(DnsShard::new).collect(),
    answers: Mutex::new(BTreeMap::new()),
    slow: Mutex::new(Slow::default()),
});

/// The counter of answers naming `region` for `service` (same counter across reloads).
pub fn answer_counter(service: &str, region: &str) -> Arc<Sharded> {
    let mut map = REGISTRY.answers.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((service.to_string(), region.to_string())).or_default().clone()
}

/// Answers per (service, region) for one snapshot's services: `[service index][position of
/// the region in the service's list]`, built with the snapshot and swapped with it, so the
/// query path indexes without a lookup or a lock. The cells are the registry's, shared by
/// name, so a reload does not reset them.
#[derive(Debug, Default)]
pub struct AnswerCounts(Vec<Vec<Arc<Sharded>>>);

impl AnswerCounts {
    /// From each service's name and its regions' names, in the snapshot's order.
    pub fn new<'a>(services: impl IntoIterator<Item = (String, Vec<&'a str>)>) -> AnswerCounts {
        AnswerCounts(
            services
                .into_iter()
                .map(|(service, regions)| regions.iter().map(|r| answer_counter(&service, r)).collect())
                .collect(),
        )
    }

    /// Counts one answer naming the region at `position` of service `service`, in worker
    /// `shard`'s cells. Out-of-range indices (a snapshot built without counters) count nothing.
    pub fn add(&self, service: usize, position: usize, shard: usize) {
        if let Some(c) = self.0.get(service).and_then(|s| s.get(position)) {
            c.add(shard, 1);
        }
    }

    /// Answers counted so far naming the region at `position` of service `service`.
    pub fn total(&self, service: usize, position: usize) -> u64 {
        self.0.get(service).and_then(|s| s.get(position)).map_or(0, |c| c.total())
    }
}

/// Label set rendering: `a="x",b="y"` with Prometheus escaping.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

fn slow() -> std::sync::MutexGuard<'static, Slow> {
    REGISTRY.slow.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds to a counter off the query path (probe results, reloads, transitions).
pub fn count(name: &'static str, help: &'static str, label_set: String) {
    let mut s = slow();
    s.help.entry(name).or_insert(("counter", help));
    *s.counters.entry((name, label_set)).or_default() += 1;
}

/// Sets a gauge off the query path.
pub fn gauge(name: &'static str, help: &'static str, label_set: String, value: f64) {
    let mut s = slow();
    s.help.entry(name).or_insert(("gauge", help));
    s.gauges.insert((name, label_set), value);
}

/// Upper bounds (seconds) of the probe duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Observes a duration in a histogram (seconds).
pub fn observe(name: &'static str, help: &'static str, label_set: String, seconds: f64) {
    let mut s = slow();
    s.help.entry(name).or_insert(("histogram", help));
    let h = s.histograms.entry((name, label_set)).or_insert_with(|| (vec![0; DURATION_BUCKETS.len()], 0.0, 0));
    for (b, &le) in h.0.iter_mut().zip(&DURATION_BUCKETS) {
        if seconds <= le {
            *b += 1;
        }
    }
    h.1 += seconds;
    h.2 += 1;
}

/// The whole registry in the Prometheus text format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(out, "# HELP gslbd_build_info Version of the running gslbd.\n# TYPE gslbd_build_info gauge");
    let _ = writeln!(out, "gslbd_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

    let _ = writeln!(out, "# HELP gslbd_dns_responses_total DNS responses sent, by transport, rcode and query type.");
    let _ = writeln!(out, "# TYPE gslbd_dns_responses_total counter");
    for (t, tname) in ["udp", "tcp"].iter().enumerate() {
        for (r, (_, rname)) in RCODES.iter().enumerate() {
            for (q, (_, qname)) in QTYPES.iter().enumerate() {
                let total: u64 = REGISTRY.dns.iter().map(|s| s.responses[t][r][q].load(Ordering::Relaxed)).sum();
                if total > 0 {
                    let _ = writeln!(
                        out,
                        "gslbd_dns_responses_total{{transport=\"{tname}\",rcode=\"{rname}\",qtype=\"{qname}\"}} {total}"
                    );
                }
            }
        }
    }
    let dropped: u64 = REGISTRY.dns.iter().map(|s| s.dropped.load(Ordering::Relaxed)).sum();
    let _ =
        writeln!(out, "# HELP gslbd_dns_dropped_total Packets dropped without an answer (too short, or a response).");
    let _ = writeln!(out, "# TYPE gslbd_dns_dropped_total counter\ngslbd_dns_dropped_total {dropped}");
    let _ = writeln!(
        out,
        "# HELP gslbd_udp_worker_datagrams_total UDP datagrams received, by worker thread (all listen addresses)."
    );
    let _ = writeln!(out, "# TYPE gslbd_udp_worker_datagrams_total counter");
    for (i, shard) in REGISTRY.dns.iter().take(UDP_WORKERS.load(Ordering::Relaxed)).enumerate() {
        let _ = writeln!(
            out,
            "gslbd_udp_worker_datagrams_total{{worker=\"{i}\"}} {}",
            shard.datagrams.load(Ordering::Relaxed)
        );
    }

    let rrl_help = [
        (
            "gslbd_rrl_limited_responses_total",
            "UDP responses limited by RRL, by action (would_*: with log_only, sent anyway).",
        ),
        ("gslbd_rrl_log_events_lost_total", "RRL start/stop log lines lost because the log queue was full."),
        ("gslbd_rrl_table_entries", "RRL table entries in use, all UDP workers."),
        ("gslbd_rrl_limited_prefixes", "Client prefixes (accounts) being rate limited now."),
        ("gslbd_rrl_table_capacity", "RRL table entries allocated, all UDP workers."),
    ];
    for (i, (name, l, kind)) in RRL_SERIES.iter().enumerate() {
        if i == 0 || RRL_SERIES[i - 1].0 != *name {
            let help = rrl_help.iter().find(|(n, _)| n == name).map_or("", |(_, h)| h);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        let v = REGISTRY.dns.iter().fold(0u64, |a, s| a.wrapping_add(s.rrl[i].load(Ordering::Relaxed)));
        let _ = writeln!(out, "{name}{} {v}", braces(l));
    }

    let _ = writeln!(
        out,
        "# HELP gslbd_answers_total Answers naming a region, by service and region: the distribution clients see."
    );
    let _ = writeln!(out, "# TYPE gslbd_answers_total counter");
    for ((service, region), c) in REGISTRY.answers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            out,
            "gslbd_answers_total{{{}}} {}",
            labels(&[("service", service), ("region", region)]),
            c.total()
        );
    }

    let s = slow();
    for (&name, &(kind, help)) in &s.help {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        match kind {
            "counter" => {
                for ((n, l), v) in s.counters.range((name, String::new())..).take_while(|((n, _), _)| *n == name) {
                    let _ = writeln!(out, "{n}{} {v}", braces(l));
                }
            }
            "gauge" => {
                for ((n, l), v) in s.gauges.range((name, String::new())..).take_while(|((n, _), _)| *n == name) {
                    let _ = writeln!(out, "{n}{} {v}", braces(l));
                }
            }
            _ => {
                for ((n, l), (buckets, sum, count)) in
                    s.histograms.range((name, String::new())..).take_while(|((n, _), _)| *n == name)
                {
                    let sep = if l.is_empty() { "" } else { "," };
                    for (b, le) in buckets.iter().zip(DURATION_BUCKETS) {
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{le}\"}} {b}");
                    }
                    let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{n}_sum{} {sum}", braces(l));
                    let _ = writeln!(out, "{n}_count{} {count}", braces(l));
                }
            }
        }
    }
    out
}

fn braces(l: &str) -> String {
    if l.is_empty() { String::new() } else { format!("{{{l}}}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        dns_shard(3).response(Transport::Udp, rcode::NXDOMAIN, rtype::AAAA);
        dns_shard(4).response(Transport::Udp, rcode::NXDOMAIN, rtype::AAAA);
        tcp_shard().response(Transport::Tcp, 77, 999);
        answer_counter("www.t.", "eu \"west\"").add(1, 1);
        answer_counter("www.t.", "eu \"west\"").add(2, 1);
        count("gslbd_test_events_total", "Test events.", labels(&[("kind", "x")]));
        gauge("gslbd_test_level", "Test level.", String::new(), 1.5);
        observe("gslbd_test_seconds", "Test durations.", labels(&[("r", "a")]), 0.003);
        let text = render();
        assert!(
            text.contains("gslbd_dns_responses_total{transport=\"udp\",rcode=\"NXDOMAIN\",qtype=\"AAAA\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gslbd_dns_responses_total{transport=\"tcp\",rcode=\"other\",qtype=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("gslbd_answers_total{service=\"www.t.\",region=\"eu \\\"west\\\"\"} 2"), "{text}");
        assert!(text.contains("gslbd_test_events_total{kind=\"x\"} 1"), "{text}");
        assert!(text.contains("gslbd_test_level 1.5"), "{text}");
        assert!(text.contains("gslbd_test_seconds_bucket{r=\"a\",le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("gslbd_test_seconds_bucket{r=\"a\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("gslbd_test_seconds_count{r=\"a\"} 1"), "{text}");
        assert!(text.contains("# TYPE gslbd_test_seconds histogram"), "{text}");
    }

    #[test]
    fn rrl_figures_are_summed_over_workers_and_gauges_may_fall() {
        // Two workers (say of two listen addresses) sharing shard 9 publish their changes.
        let (a0, b0) = ([0; 8], [0; 8]);
        let a1 = [5, 2, 0, 0, 0, 10, 1, 1024];
        let b1 = [1, 1, 0, 0, 0, 4, 1, 1024];
        dns_shard(9).rrl_changed(&a0, &a1);
        dns_shard(9).rrl_changed(&b0, &b1);
        let a2 = [6, 2, 0, 0, 0, 7, 0, 1024]; // entries replaced, the prefix no longer limited
        dns_shard(9).rrl_changed(&a1, &a2);
        let text = render();
        for want in [
            "gslbd_rrl_limited_responses_total{action=\"dropped\"} 7",
            "gslbd_rrl_limited_responses_total{action=\"slipped\"} 3",
            "gslbd_rrl_table_entries 11",
            "gslbd_rrl_limited_prefixes 1",
            "gslbd_rrl_table_capacity 2048",
            "# TYPE gslbd_rrl_limited_responses_total counter",
            "# TYPE gslbd_rrl_table_entries gauge",
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE gslbd_rrl_limited_responses_total").count(), 1);
    }

    #[test]
    fn answer_counts_survive_a_rebuilt_table_and_ignore_unknown_indices() {
        let build = || AnswerCounts::new([("counts.t.".to_string(), vec!["r1", "r2"])]);
        let before = build();
        before.add(0, 1, 3);
        before.add(0, 9, 3);
        before.add(5, 0, 3);
        // A reload builds a new table from the same names: the same cells.
        let after = build();
        after.add(0, 1, 4);
        assert_eq!((after.total(0, 0), after.total(0, 1), after.total(0, 9)), (0, 2, 0));
    }
}
