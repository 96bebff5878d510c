//! The prober's schedule and bookkeeping, with scripted probes on paused time: every wait
//! below is virtual, so the bounds are exact and the tests take milliseconds.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::*;
use crate::health::FailReason;
use crate::health::probe::tcp::Tcp;

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;
/// Fail, succeed, fail, succeed ...
const FLAP: u8 = 3;

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Script {
    mode: AtomicU8,
    calls: AtomicUsize,
}

impl Script {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A TCP check whose address names the script that answers it.
fn check(name: &str, rise: u32, fall: u32) -> CheckConfig {
    CheckConfig {
        kind: Arc::new(Tcp { address: name.into() }),
        interval: INTERVAL,
        timeout: TIMEOUT,
        rise,
        fall,
        window: None,
    }
}

fn region(name: &str, checks: Vec<CheckConfig>, quorum: Option<usize>) -> RegionChecks {
    RegionChecks { name: name.into(), checks, quorum }
}

struct Fixture {
    prober: Prober,
    rx: watch::Receiver<Arc<HealthTable>>,
    stop: crate::shutdown::Trigger,
    scripts: Arc<Mutex<HashMap<String, Arc<Script>>>>,
}

impl Fixture {
    fn new(history: usize) -> Fixture {
        let scripts: Arc<Mutex<HashMap<String, Arc<Script>>>> = Arc::default();
        let s2 = scripts.clone();
        let factory: ProbeFactory = Arc::new(move |c: &CheckConfig| {
            let Some(Tcp { address }) = c.kind.downcast_ref::<Tcp>() else { panic!("tcp checks only") };
            let script = s2.lock().unwrap().entry(address.clone()).or_default().clone();
            Probe::scripted(
                c.timeout,
                Arc::new(move || {
                    let n = script.calls.fetch_add(1, Ordering::SeqCst);
                    let mode = script.mode.load(Ordering::SeqCst);
                    Box::pin(async move {
                        match mode {
                            OK => Ok(()),
                            FAIL => Err(FailReason::Status(503)),
                            FLAP if n % 2 == 1 => Ok(()),
                            FLAP => Err(FailReason::ConnectionRefused),
                            _ => std::future::pending().await,
                        }
                    })
                }),
            )
        });
        let (stop, stop_rx) = crate::shutdown::Shutdown::new();
        let (prober, rx) = Prober::with_factory(history, stop_rx, factory);
        Fixture { prober, rx, stop, scripts }
    }

    fn script(&self, address: &str) -> Arc<Script> {
        self.scripts.lock().unwrap().entry(address.into()).or_default().clone()
    }

    fn health(&self, region: &str) -> RegionHealth {
        self.rx.borrow().region(region).cloned().unwrap_or_else(|| panic!("{region} not in the table"))
    }

    /// Waits (virtual time) until the region reaches `state`; returns how long that took.
    async fn wait(&mut self, region: &str, state: Verdict) -> Duration {
        let start = Instant::now();
        let reached = self.rx.wait_for(|t| t.region(region).map(|h| h.state) == Some(state));
        tokio::time::timeout(Duration::from_secs(120), reached)
            .await
            .unwrap_or_else(|_| panic!("{region} never became {state}"))
            .unwrap();
        start.elapsed()
    }
}

#[tokio::test(start_paused = true)]
async fn verdicts_need_rise_and_fall_consecutive_probes_within_bounds() {
    let mut f = Fixture::new(10);
    f.script("a").set(OK);
    f.prober.apply(vec![region("a", vec![check("a", 2, 3)], None)], 10);
    assert_eq!(f.health("a").state, Verdict::Unknown, "no verdict before the first probes");

    // First probe within one interval, the second one interval (±10%) later.
    let t = f.wait("a", Verdict::Healthy).await;
    assert!(t >= INTERVAL.mul_f64(0.9) && t <= INTERVAL.mul_f64(2.1), "healthy after {t:?}");

    f.script("a").set(FAIL);
    let t = f.wait("a", Verdict::Unhealthy).await;
    assert!(t >= INTERVAL.mul_f64(1.8) && t <= INTERVAL.mul_f64(3.3), "unhealthy after {t:?}");
    let h = f.health("a");
    assert_eq!(h.reason, Some(FailReason::Status(503)));
    assert_eq!(h.transitions, 2);

    f.script("a").set(OK);
    let t = f.wait("a", Verdict::Healthy).await;
    assert!(t <= INTERVAL.mul_f64(2.2), "healthy again after {t:?}");
    let h = f.health("a");
    assert_eq!((h.reason, h.transitions), (None, 3));
    assert!(h.rtt_ewma_ms.is_some(), "successful probes feed the RTT average");
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_is_a_timeout_failure() {
    let mut f = Fixture::new(10);
    f.script("a").set(HANG);
    f.prober.apply(vec![region("a", vec![check("a", 2, 3)], None)], 10);
    let t = f.wait("a", Verdict::Unhealthy).await;
    // Three probes, each cut at the timeout; they do not delay the schedule.
    assert!(t <= INTERVAL.mul_f64(3.3) + TIMEOUT, "unhealthy after {t:?}");
    let h = f.health("a");
    assert_eq!(h.reason, Some(FailReason::Timeout(TIMEOUT)));
    assert!(h.recent.iter().all(|r| r.outcome == ProbeOutcome::Fail(FailReason::Timeout(TIMEOUT))));
    assert_eq!(h.recent.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_endpoint_does_not_flap_the_verdict() {
    let mut f = Fixture::new(10);
    f.script("a").set(OK);
    f.prober.apply(vec![region("a", vec![check("a", 2, 3)], None)], 10);
    f.wait("a", Verdict::Healthy).await;
    f.script("a").set(FLAP);
    tokio::time::sleep(INTERVAL * 30).await;
    let h = f.health("a");
    assert_eq!((h.state, h.transitions), (Verdict::Healthy, 1));
    assert!(f.script("a").calls() >= 27, "kept probing: {}", f.script("a").calls());
}

#[tokio::test(start_paused = true)]
async fn quorum_decides_between_several_checks() {
    let mut f = Fixture::new(10);
    f.script("up").set(OK);
    f.script("down").set(FAIL);
    f.script("up2").set(OK);
    let two = vec![check("up", 2, 3), check("down", 2, 3)];
    f.prober.apply(
        vec![
            region("any", two.clone(), Some(1)),
            region("all", two, None),
            region("all-up", vec![check("up", 2, 3), check("up2", 2, 3)], None),
        ],
        10,
    );
    f.wait("all", Verdict::Unhealthy).await;
    f.wait("any", Verdict::Healthy).await;
    f.wait("all-up", Verdict::Healthy).await;
    assert_eq!(f.health("any").state, Verdict::Healthy);
}

#[tokio::test(start_paused = true)]
async fn apply_keeps_unchanged_restarts_changed_and_stops_removed() {
    let mut f = Fixture::new(10);
    for s in ["a", "b", "c"] {
        f.script(s).set(OK);
    }
    let a = region("a", vec![check("a", 2, 3)], None);
    f.prober.apply(
        vec![a.clone(), region("b", vec![check("b", 2, 3)], None), region("c", vec![check("c", 2, 3)], None)],
        10,
    );
    for r in ["a", "b", "c"] {
        f.wait(r, Verdict::Healthy).await;
    }
    let a_before = f.health("a");

    let b_before = f.health("b");
    f.prober.apply(vec![a, region("b", vec![check("b", 3, 3)], None)], 10);
    let table = f.prober.table();
    assert_eq!(table.region("a").map(|h| (h.state, h.since, h.transitions)), Some((a_before.state, a_before.since, 1)));
    assert_eq!(table.region("b"), Some(&b_before), "changed checks go on from what was known");
    assert!(table.region("c").is_none(), "removed region left the table");

    let c_calls = f.script("c").calls();
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(f.script("c").calls(), c_calls, "no probe of a removed region");
    assert_eq!(f.health("b").state, Verdict::Healthy);
    assert!(f.script("a").calls() >= 10);
}

#[tokio::test(start_paused = true)]
async fn history_keeps_the_latest_results() {
    let mut f = Fixture::new(3);
    f.script("a").set(OK);
    f.prober.apply(vec![region("a", vec![check("a", 1, 1)], None)], 3);
    tokio::time::sleep(INTERVAL * 10).await;
    let h = f.health("a");
    assert_eq!(h.recent.len(), 3);
    assert!(h.recent.iter().all(|r| r.outcome.is_ok()));
    assert!(h.recent.iter().zip(h.recent.iter().skip(1)).all(|(a, b)| a.at <= b.at), "oldest first");
    f.wait("a", Verdict::Healthy).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_probe() {
    let f = Fixture::new(10);
    let mut f = f;
    f.script("a").set(OK);
    f.prober.apply(vec![region("a", vec![check("a", 2, 3)], None)], 10);
    tokio::time::sleep(INTERVAL * 3).await;
    f.stop.fire();
    tokio::time::sleep(INTERVAL).await;
    let calls = f.script("a").calls();
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(f.script("a").calls(), calls);
    assert!(calls >= 2);
}

#[test]
fn ewma_weights_the_newest_sample_by_alpha() {
    assert_eq!(ewma(None, 10.0), 10.0);
    assert!((ewma(Some(10.0), 20.0) - 13.0).abs() < 1e-9);
    // A step from 10 to 20 ms is mostly followed after 5 samples, not after 1.
    let mut v = Some(10.0);
    for _ in 0..5 {
        v = Some(ewma(v, 20.0));
    }
    assert!(v.is_some_and(|v| (18.0..19.0).contains(&v)), "{v:?}");
}

#[test]
fn jitter_stays_within_ten_percent() {
    let d = Duration::from_secs(2);
    let samples: Vec<Duration> = (0..1000).map(|_| jittered(d)).collect();
    assert!(samples.iter().all(|s| *s >= d.mul_f64(0.9) && *s <= d.mul_f64(1.1)));
    assert!(samples.iter().any(|s| *s < d.mul_f64(0.95)) && samples.iter().any(|s| *s > d.mul_f64(1.05)), "spread");
}

/// A reload that changes a check must not forget the verdict: (state before, the change,
/// the probes after) -> the region never passes through `Unknown`, and it changes only on
/// the usual evidence.
#[tokio::test(start_paused = true)]
async fn a_changed_check_goes_on_from_the_regions_verdict() {
    let mut f = Fixture::new(10);
    f.script("dead").set(FAIL);
    f.script("alive").set(OK);
    f.script("other").set(OK);
    let dead = |timeout_ms: u64, quorum| {
        let mut c = check("dead", 2, 3);
        c.timeout = Duration::from_millis(timeout_ms);
        region("dead", vec![c], quorum)
    };
    f.prober.apply(vec![dead(500, None), region("alive", vec![check("alive", 2, 3)], None)], 10);
    f.wait("dead", Verdict::Unhealthy).await;
    f.wait("alive", Verdict::Healthy).await;
    let (dead_before, alive_before) = (f.health("dead"), f.health("alive"));

    // Only the timeout changes: still unhealthy, same since, reason and history.
    let mut alive2 = check("alive", 2, 3);
    alive2.timeout = Duration::from_millis(400);
    f.prober.apply(vec![dead(450, None), region("alive", vec![alive2.clone()], None)], 10);
    assert_eq!(f.health("dead"), dead_before);
    assert_eq!(f.health("alive"), alive_before);
    let mut seen = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(INTERVAL / 4).await;
        seen.push((f.health("dead").state, f.health("alive").state));
    }
    assert!(seen.iter().all(|s| *s == (Verdict::Unhealthy, Verdict::Healthy)), "{seen:?}");
    assert_eq!((f.health("dead").transitions, f.health("alive").transitions), (1, 1));

    // A check on a new target starts from the region's verdict, and a healthy target then
    // brings the region back after rise successes, as from any unhealthy state.
    f.prober.apply(vec![region("dead", vec![check("other", 2, 3)], None), region("alive", vec![alive2], None)], 10);
    assert_eq!(f.health("dead").state, Verdict::Unhealthy);
    let t = f.wait("dead", Verdict::Healthy).await;
    assert!(t >= INTERVAL.mul_f64(0.9), "rise = 2 probes needed, healthy after {t:?}");
    assert_eq!(f.health("dead").transitions, 2, "unhealthy -> healthy, never through unknown");
}
