//! Metrics for Prometheus, on the `prometheus-client` crate: one registry with the prefix
//! `gslbd_`, typed label sets, encoded in the Prometheus text format (0.0.4).
//!
//! Three kinds of series, by who writes them:
//! - The query path: DNS response, drop, datagram and RRL figures live in per-worker shards
//!   of plain atomics ([`DnsShard`]), so two UDP workers never write the same cache line and
//!   never take a lock; answer counters per (service, region) are [`Sharded`] the same way.
//!   [`DnsCollector`] sums the shards when scraped.
//! - Off the query path (probes, health transitions, reloads, mode changes): counters and a
//!   histogram in prometheus-client families, written through the functions below.
//! - State (regions and services of the serving snapshot): not stored here at all. The
//!   admin API's collector computes them from the current snapshot at each scrape
//!   ([`render`] takes it), so a region or service deleted by a reload is gone from the next
//!   scrape instead of exporting its last value forever.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
    /// Adds `n` in the cell of worker `shard` (taken modulo the number of cells).
    pub fn add(&self, shard: usize, n: u64) {
        self.cells[shard % CELLS].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The counter's value: the sum of its cells.
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
    /// DNSSEC signatures put in answers: [from the cache, made fresh, refused (over budget)].
    signatures: [AtomicU64; 3],
}

/// The RRL series a shard keeps, in order: (metric without prefix or `_total`, `action`
/// label, type). Counters first, then gauges.
pub const RRL_SERIES: [(&str, Option<&str>, MetricType); 8] = [
    ("rrl_limited_responses", Some("dropped"), MetricType::Counter),
    ("rrl_limited_responses", Some("slipped"), MetricType::Counter),
    ("rrl_limited_responses", Some("would_drop"), MetricType::Counter),
    ("rrl_limited_responses", Some("would_slip"), MetricType::Counter),
    ("rrl_log_events_lost", None, MetricType::Counter),
    ("rrl_table_entries", None, MetricType::Gauge),
    ("rrl_limited_prefixes", None, MetricType::Gauge),
    ("rrl_table_capacity", None, MetricType::Gauge),
];

/// HELP of each RRL metric.
const RRL_HELP: [(&str, &str); 5] = [
    ("rrl_limited_responses", "UDP responses limited by RRL, by action (would_*: with log_only, sent anyway)"),
    ("rrl_log_events_lost", "RRL start/stop log lines lost because the log queue was full"),
    ("rrl_table_entries", "RRL table entries in use, all UDP workers"),
    ("rrl_limited_prefixes", "Client prefixes (accounts) being rate limited now"),
    ("rrl_table_capacity", "RRL table entries allocated, all UDP workers"),
];

impl DnsShard {
    fn new(index: usize) -> Self {
        DnsShard {
            index,
            responses: std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))),
            dropped: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            rrl: std::array::from_fn(|_| AtomicU64::new(0)),
            signatures: std::array::from_fn(|_| AtomicU64::new(0)),
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

    /// Counts the RRSIG RRsets one DO=1 answer took from the cache and made fresh, and the
    /// signatures refused for want of budget (the answer was SERVFAIL).
    pub fn signatures(&self, cached: u64, fresh: u64, refused: u64) {
        for (cell, n) in self.signatures.iter().zip([cached, fresh, refused]) {
            if n > 0 {
                cell.fetch_add(n, Ordering::Relaxed);
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
    &SHARDS_ALL[i % SHARDS]
}

/// UDP workers per listen address, for rendering the per-worker series (every worker gets
/// one, including those that received nothing).
static UDP_WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Records how many UDP workers run per listen address (the largest seen; capped below the
/// shard count, whose last shard is TCP's), so each gets a series even at zero.
pub fn set_udp_workers(n: usize) {
    UDP_WORKERS.fetch_max(n.min(SHARDS - 1), Ordering::Relaxed);
}

/// The shard the TCP server counts in (the last one, after every UDP worker's).
pub fn tcp_shard() -> &'static DnsShard {
    &SHARDS_ALL[SHARDS - 1]
}

/// Every worker's DNS counters.
static SHARDS_ALL: LazyLock<Vec<DnsShard>> = LazyLock::new(|| (0..SHARDS).map(DnsShard::new).collect());

/// Answer counters by (service, region) name, handed to each new [`crate::gslb::Service`]
/// so a reload keeps counting where the last one stopped. Only the current snapshot's
/// services are exported.
type AnswerCounters = BTreeMap<(String, String), Arc<Sharded>>;
static ANSWERS: LazyLock<Mutex<AnswerCounters>> = LazyLock::new(Mutex::default);

/// The counter of answers naming `region` for `service` (same counter across reloads).
pub fn answer_counter(service: &str, region: &str) -> Arc<Sharded> {
    let mut map = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
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

/// `{service, mode}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceModeLabels {
    /// The service's name.
    pub service: String,
    /// The service's mode (`normal`, `degraded`, `fail-open`, `all-down`).
    pub mode: &'static str,
}

/// `{region}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    /// The region's name.
    pub region: String,
}

/// `{region, result}`: a probe's outcome (`ok`, `timeout`, `refused`, `tls`, `status` ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeResultLabels {
    /// The region's name.
    pub region: String,
    /// The probe's result.
    pub result: &'static str,
}

/// `{region, to}`: the health state entered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The region's name.
    pub region: String,
    /// The verdict entered: `healthy`, `unhealthy` or `unknown`.
    pub to: &'static str,
}

/// `{result}` of a reload: `ok` or `failed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `failed`.
    pub result: &'static str,
}

/// Upper bounds (seconds) of the probe duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// The series written off the query path, and the registry that exports them.
struct Slow {
    registry: Registry,
    service_mode_changes: Family<ServiceModeLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    reload_last_success: Gauge,
    probe_results: Family<ProbeResultLabels, Counter>,
    probe_duration: HistogramFamily<RegionLabels>,
    health_transitions: Family<TransitionLabels, Counter>,
    load_reads: Family<LoadReadLabels, Counter>,
}

/// `{region, result}` of a load reading: `ok`, or why it failed (`timeout`, `connect`,
/// `status`, `parse`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoadReadLabels {
    /// The region whose load was read.
    pub region: String,
    /// `ok`, or why the reading failed (`timeout`, `connect`, `status`, `parse`).
    pub result: &'static str,
}

static SLOW: LazyLock<Slow> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("gslbd");
    let service_mode_changes = Family::default();
    registry.register(
        "service_mode_changes",
        "Service mode changes (to normal, degraded, fail-open, all-down)",
        Family::clone(&service_mode_changes),
    );
    let reloads = Family::default();
    registry.register("reloads", "Reloads of config and zones, by result", Family::clone(&reloads));
    // 1 from the start: the data serving was loaded from the files at start.
    let reload_last_success = Gauge::default();
    reload_last_success.set(1);
    registry.register("reload_last_success", "1 if the last reload succeeded", reload_last_success.clone());
    let probe_results = Family::default();
    registry.register(
        "probe_results",
        "Health probe results by region and outcome (ok, timeout, refused, tls, status, ...)",
        Family::clone(&probe_results),
    );
    let probe_duration: HistogramFamily<RegionLabels> =
        Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
    registry.register("probe_duration_seconds", "Duration of successful health probes", Family::clone(&probe_duration));
    let health_transitions = Family::default();
    registry.register(
        "health_transitions",
        "Region health changes, by the state entered",
        Family::clone(&health_transitions),
    );
    let load_reads = Family::default();
    registry.register(
        "load_reads",
        "Load readings by region and result (ok, timeout, connect, status, parse)",
        Family::clone(&load_reads),
    );
    registry.register_collector(Box::new(DnsCollector));
    Slow {
        load_reads,
        registry,
        service_mode_changes,
        reloads,
        reload_last_success,
        probe_results,
        probe_duration,
        health_transitions,
    }
});

/// Counts a service entering `mode`.
pub fn service_mode_changed(service: &str, mode: &'static str) {
    SLOW.service_mode_changes.get_or_create(&ServiceModeLabels { service: service.to_string(), mode }).inc();
}

/// Counts a reload and records whether it succeeded.
pub fn reloaded(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    SLOW.reloads.get_or_create(&ReloadLabels { result }).inc();
    SLOW.reload_last_success.set(i64::from(ok));
}

/// Counts one probe of `region` with its result; a passing probe's duration goes into the
/// histogram.
pub fn probed(region: &str, result: &'static str, passed_in: Option<std::time::Duration>) {
    SLOW.probe_results.get_or_create(&ProbeResultLabels { region: region.to_string(), result }).inc();
    if let Some(d) = passed_in {
        SLOW.probe_duration.get_or_create(&RegionLabels { region: region.to_string() }).observe(d.as_secs_f64());
    }
}

/// Counts `region` entering health state `to`.
pub fn health_changed(region: &str, to: &'static str) {
    SLOW.health_transitions.get_or_create(&TransitionLabels { region: region.to_string(), to }).inc();
}

/// Counts one load reading of `region`: None when good, else the failure's kind.
pub fn load_read(region: &str, failure: Option<&'static str>) {
    let result = failure.unwrap_or("ok");
    SLOW.load_reads.get_or_create(&LoadReadLabels { region: region.to_string(), result }).inc();
}

/// Encodes one counter value (no exemplar).
pub fn encode_counter(m: &mut prometheus_client::encoding::MetricEncoder<'_>, v: u64) -> std::fmt::Result {
    m.encode_counter::<NoLabelSet, u64, f64>(&v, None)
}

/// The query path's counters, summed over the worker shards at each scrape, and the build
/// info.
#[derive(Debug)]
pub struct DnsCollector;

impl Collector for DnsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let shards: &[DnsShard] = &SHARDS_ALL;
        let mut m = encoder.encode_descriptor("build_info", "Version of the running gslbd", None, MetricType::Gauge)?;
        m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?.encode_gauge(&1i64)?;

        let mut m = encoder.encode_descriptor(
            "dns_responses",
            "DNS responses sent, by transport, rcode and query type",
            None,
            MetricType::Counter,
        )?;
        for (t, tname) in ["udp", "tcp"].iter().enumerate() {
            for (r, (_, rname)) in RCODES.iter().enumerate() {
                for (q, (_, qname)) in QTYPES.iter().enumerate() {
                    let total: u64 = shards.iter().map(|s| s.responses[t][r][q].load(Ordering::Relaxed)).sum();
                    if total > 0 {
                        let labels = [("transport", *tname), ("rcode", *rname), ("qtype", *qname)];
                        encode_counter(&mut m.encode_family(&labels)?, total)?;
                    }
                }
            }
        }
        let dropped: u64 = shards.iter().map(|s| s.dropped.load(Ordering::Relaxed)).sum();
        let mut m = encoder.encode_descriptor(
            "dns_dropped",
            "Packets dropped without an answer (too short, or a response)",
            None,
            MetricType::Counter,
        )?;
        encode_counter(&mut m, dropped)?;

        let mut m = encoder.encode_descriptor(
            "dnssec_signatures",
            "RRSIG RRsets put in DO=1 answers, by result: cached, fresh (signed now), refused (over the fresh-signature budget: SERVFAIL)",
            None,
            MetricType::Counter,
        )?;
        for (i, result) in ["cached", "fresh", "refused"].into_iter().enumerate() {
            let n: u64 = shards.iter().map(|s| s.signatures[i].load(Ordering::Relaxed)).sum();
            encode_counter(&mut m.encode_family(&[("result", result)])?, n)?;
        }

        let mut m = encoder.encode_descriptor(
            "udp_worker_datagrams",
            "UDP datagrams received, by worker thread (all listen addresses)",
            None,
            MetricType::Counter,
        )?;
        for (i, shard) in shards.iter().take(UDP_WORKERS.load(Ordering::Relaxed)).enumerate() {
            let worker = i.to_string();
            encode_counter(
                &mut m.encode_family(&[("worker", worker.as_str())])?,
                shard.datagrams.load(Ordering::Relaxed),
            )?;
        }

        for (name, help) in RRL_HELP {
            let series = || RRL_SERIES.iter().enumerate().filter(|(_, s)| s.0 == name);
            let Some((_, (_, _, kind))) = series().next() else { continue };
            let mut m = encoder.encode_descriptor(name, help, None, *kind)?;
            for (i, (_, action, kind)) in series() {
                let v = shards.iter().fold(0u64, |a, s| a.wrapping_add(s.rrl[i].load(Ordering::Relaxed)));
                let one = |m: &mut prometheus_client::encoding::MetricEncoder<'_>| match kind {
                    MetricType::Counter => encode_counter(m, v),
                    _ => m.encode_gauge(&(v as i64)),
                };
                match action {
                    Some(a) => one(&mut m.encode_family(&[("action", *a)])?)?,
                    None => one(&mut m)?,
                }
            }
        }

        let targets = NOTIFY.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !targets.is_empty() {
            let mut m = encoder.encode_descriptor(
                "notify_deliveries",
                "Webhook notifications, by target and result (ok, failed after every retry)",
                None,
                MetricType::Counter,
            )?;
            for (target, c) in &targets {
                for (result, v) in [("ok", &c.delivered), ("failed", &c.failed)] {
                    let labels = [("target", target.as_str()), ("result", result)];
                    encode_counter(&mut m.encode_family(&labels)?, v.load(Ordering::Relaxed))?;
                }
            }
            let mut m = encoder.encode_descriptor(
                "notify_dropped",
                "Changes not sent to a webhook target because its queue was full",
                None,
                MetricType::Counter,
            )?;
            for (target, c) in &targets {
                encode_counter(
                    &mut m.encode_family(&[("target", target.as_str())])?,
                    c.dropped.load(Ordering::Relaxed),
                )?;
            }
        }
        Ok(())
    }
}

/// What one webhook target's task has done (see `notify`).
#[derive(Debug, Default)]
pub struct NotifyCounters {
    /// Notifications the receiver accepted (a 2xx answer).
    pub delivered: AtomicU64,
    /// Notifications given up after every retry failed.
    pub failed: AtomicU64,
    /// Changes that did not fit the target's queue.
    pub dropped: Arc<AtomicU64>,
}

/// The webhook targets' counters, labelled by URL (scheme, host and path: a query string
/// may hold a secret, so it is left out).
static NOTIFY: LazyLock<Mutex<Vec<NotifyTarget>>> = LazyLock::new(Default::default);

/// A webhook target's label and counters.
pub type NotifyTarget = (String, Arc<NotifyCounters>);

/// Exports these webhook targets' counters (replacing any earlier set).
pub fn set_notify_counters(targets: Vec<NotifyTarget>) {
    let labelled =
        targets.into_iter().map(|(url, c)| (url.split(['?', '#']).next().unwrap_or("").to_string(), c)).collect();
    *NOTIFY.lock().unwrap_or_else(|p| p.into_inner()) = labelled;
}

/// Everything in the Prometheus text format (0.0.4): the registry, then what `state`
/// computes from the serving snapshot (regions, services, answers), so only what the
/// snapshot holds is exported.
pub fn render(state: impl Collector) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &SLOW.registry);
    let mut scrape = Registry::with_prefix("gslbd");
    scrape.register_collector(Box::new(state));
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No snapshot: the registry's series only.
    #[derive(Debug)]
    struct NoState;

    impl Collector for NoState {
        fn encode(&self, _: DescriptorEncoder) -> std::fmt::Result {
            Ok(())
        }
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        dns_shard(3).response(Transport::Udp, rcode::NXDOMAIN, rtype::AAAA);
        dns_shard(4).response(Transport::Udp, rcode::NXDOMAIN, rtype::AAAA);
        tcp_shard().response(Transport::Tcp, 77, 999);
        service_mode_changed("www.t.", "fail-open");
        health_changed("eu \"west\"", "unhealthy");
        probed("metrics-test", "ok", Some(std::time::Duration::from_millis(3)));
        probed("metrics-test", "timeout", None);
        let text = render(NoState);
        for want in [
            "gslbd_dns_responses_total{transport=\"udp\",rcode=\"NXDOMAIN\",qtype=\"AAAA\"} 2\n",
            "gslbd_dns_responses_total{transport=\"tcp\",rcode=\"other\",qtype=\"other\"} 1\n",
            "# TYPE gslbd_dns_responses_total counter\n",
            "gslbd_service_mode_changes_total{service=\"www.t.\",mode=\"fail-open\"} 1\n",
            "gslbd_health_transitions_total{region=\"eu \\\"west\\\"\",to=\"unhealthy\"} 1\n",
            "gslbd_probe_results_total{region=\"metrics-test\",result=\"timeout\"} 1\n",
            "gslbd_probe_duration_seconds_bucket{region=\"metrics-test\",le=\"0.0025\"} 0\n",
            "gslbd_probe_duration_seconds_bucket{region=\"metrics-test\",le=\"0.005\"} 1\n",
            "gslbd_probe_duration_seconds_count{region=\"metrics-test\"} 1\n",
            "# TYPE gslbd_probe_duration_seconds histogram\n",
            "gslbd_reload_last_success 1\n",
            "# TYPE gslbd_build_info gauge\n",
            concat!("gslbd_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1\n"),
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
        // prometheus-client ends HELP with a period of its own.
        assert!(!text.lines().any(|l| l.starts_with("# HELP") && l.ends_with("..")), "{text}");
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
        let text = render(NoState);
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
