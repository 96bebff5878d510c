//! The prober: one task per check, each probing on its own jittered schedule, feeding its
//! rise/fall machine; the region's verdict (quorum of its checks), RTT average and recent
//! results live in one table that is published, as an immutable [`HealthTable`], after
//! every probe result.
//!
//! Schedule: the first probe of a check starts after a random delay within one interval,
//! then every `interval ± 10%` (start to start), so regions and checks are not probed in
//! lockstep after a start or reload. A probe never outlives its timeout, and the timeout is
//! shorter than the interval, so a hung endpoint costs one timeout per interval and delays
//! nothing else.
//!
//! Every task stops on the one shutdown signal (a `watch` channel that turns `true`), and
//! the tasks of a region are aborted when [`Prober::apply`] removes or changes its checks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::check::CheckConfig;
use super::{HealthTable, Machine, Probe, ProbeOutcome, ProbeRecord, RegionHealth, Verdict, quorum};
use crate::shutdown::Shutdown;

/// Weight of the newest RTT sample in the average: 0.3 follows a real change within a few
/// probes (half-life about 2 probes) while one slow answer moves it by less than a third.
pub const EWMA_ALPHA: f64 = 0.3;
/// Each wait between probes is the interval ± this fraction, at random.
pub const JITTER: f64 = 0.1;

/// The checks of one region, as the prober runs them. Equal specs keep their state across
/// [`Prober::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegionChecks {
    /// The region's name.
    pub name: String,
    /// Its health checks, in config order.
    pub checks: Vec<CheckConfig>,
    /// Checks that must pass; None: all.
    pub quorum: Option<usize>,
}

impl RegionChecks {
    fn need(&self) -> usize {
        self.quorum.unwrap_or(self.checks.len())
    }

    /// A short digest of the checks and quorum (FNV-1a 64 of their description, stable
    /// across builds of the same version): a saved verdict is only trusted for the same
    /// checks.
    pub fn fingerprint(&self) -> String {
        let text = format!("{:?}|{:?}", self.checks, self.quorum);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// Builds the probe of a check; replaceable so tests can script outcomes.
pub type ProbeFactory = Arc<dyn Fn(&CheckConfig) -> Probe + Send + Sync>;

/// Owns the probe tasks. Lives where reloads happen; the health table is read from the
/// receiver [`Prober::new`] returns.
pub struct Prober {
    shared: Arc<Shared>,
    running: HashMap<String, Running>,
    shutdown: Shutdown,
    factory: ProbeFactory,
    next_generation: u64,
    /// Verdicts from before a restart, used by the next [`Prober::apply`].
    seeds: HashMap<String, Seed>,
}

struct Running {
    spec: RegionChecks,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    table: Mutex<Table>,
    tx: watch::Sender<Arc<HealthTable>>,
}

struct Table {
    regions: BTreeMap<String, Entry>,
    history: usize,
}

struct Entry {
    /// Which start of the region's checks the entry belongs to: a result from an aborted
    /// task that was already past its last await never lands in its successor's entry.
    generation: u64,
    machines: Vec<Machine>,
    need: usize,
    /// [`RegionChecks::fingerprint`], published so verdicts can be saved with it.
    fingerprint: String,
    health: RegionHealth,
}

impl Prober {
    /// A prober with no regions; tasks it starts stop when `shutdown` turns true.
    pub fn new(history: usize, shutdown: Shutdown) -> (Prober, watch::Receiver<Arc<HealthTable>>) {
        Prober::with_factory(history, shutdown, Arc::new(Probe::build))
    }

    /// Like [`Prober::new`], with `factory` building each check's probe (tests substitute
    /// scripted probes for real ones).
    pub fn with_factory(
        history: usize,
        shutdown: Shutdown,
        factory: ProbeFactory,
    ) -> (Prober, watch::Receiver<Arc<HealthTable>>) {
        let (tx, rx) = watch::channel(Arc::new(HealthTable::default()));
        let shared = Arc::new(Shared { table: Mutex::new(Table { regions: BTreeMap::new(), history }), tx });
        (Prober { shared, running: HashMap::new(), shutdown, factory, next_generation: 0, seeds: HashMap::new() }, rx)
    }

    /// The latest published table.
    pub fn table(&self) -> Arc<HealthTable> {
        self.shared.tx.borrow().clone()
    }

    /// Reconciles the running checks with `regions`. A region whose checks are unchanged
    /// keeps its state and tasks. A region whose checks changed gets new tasks but keeps
    /// what was known: its verdict, since when, reason, RTT average, recent results and
    /// transition count; each new check resumes the machine of the old check with the same
    /// probe target (state, streaks and window, under the new thresholds), and a check with
    /// a new target starts from the region's last verdict. A new region starts `Unknown`,
    /// or from its saved verdict ([`Prober::seed`]). A removed one's tasks are aborted and
    /// its entry dropped. Publishes the result before returning, so a status rebuilt right
    /// after sees every region. Must run inside a tokio runtime.
    pub fn apply(&mut self, regions: Vec<RegionChecks>, history: usize) {
        let (mut kept, mut started, mut stopped, mut resumed, mut seeded) = (0, 0, 0, 0, 0);
        let mut table = self.shared.lock();
        let history = history.max(1);
        table.history = history;
        for e in table.regions.values_mut() {
            while e.health.recent.len() > history {
                e.health.recent.pop_front();
            }
        }
        let wanted: HashMap<&str, &RegionChecks> = regions.iter().map(|r| (r.name.as_str(), r)).collect();
        // Entries of regions whose checks changed, with the checks they were for.
        let mut previous: HashMap<String, (RegionChecks, Entry)> = HashMap::new();
        self.running.retain(|name, run| {
            let still = wanted.get(name.as_str());
            if still.is_some_and(|w| **w == run.spec) {
                return true;
            }
            for t in &run.tasks {
                t.abort();
            }
            let entry = table.regions.remove(name);
            if let (Some(_), Some(entry)) = (still, entry) {
                previous.insert(name.clone(), (run.spec.clone(), entry));
            }
            stopped += 1;
            false
        });
        for spec in regions {
            if self.running.contains_key(&spec.name) {
                kept += 1;
                continue;
            }
            started += 1;
            self.next_generation += 1;
            let generation = self.next_generation;
            let fingerprint = spec.fingerprint();
            let seed = self.seeds.remove(&spec.name);
            let entry = if let Some((old, prev)) = previous.remove(&spec.name) {
                resumed += 1;
                Entry {
                    generation,
                    machines: resumed_machines(&old, &prev.machines, &spec, prev.health.state),
                    need: spec.need(),
                    fingerprint,
                    health: prev.health,
                }
            } else {
                let seed = seed.filter(|s| {
                    let same = s.fingerprint == fingerprint;
                    if !same {
                        tracing::info!(region = %spec.name, "saved health verdict ignored: the region's checks changed");
                    }
                    same
                });
                let state = seed.as_ref().map_or(Verdict::Unknown, |s| s.state);
                seeded += usize::from(seed.is_some());
                Entry {
                    generation,
                    machines: spec.checks.iter().map(|c| machine(c).seeded(state)).collect(),
                    need: spec.need(),
                    fingerprint,
                    health: RegionHealth {
                        state,
                        since: seed.as_ref().map_or_else(SystemTime::now, |s| s.since),
                        reason: None,
                        rtt_ewma_ms: seed.and_then(|s| s.rtt_ewma_ms),
                        recent: VecDeque::new(),
                        transitions: 0,
                    },
                }
            };
            table.regions.insert(spec.name.clone(), entry);
            let tasks = spec
                .checks
                .iter()
                .enumerate()
                .map(|(index, check)| {
                    let job = CheckJob {
                        shared: self.shared.clone(),
                        region: spec.name.clone(),
                        generation,
                        index,
                        probe: (self.factory)(check),
                        interval: check.interval,
                    };
                    tokio::spawn(job.run(self.shutdown.clone()))
                })
                .collect();
            self.running.insert(spec.name.clone(), Running { spec, tasks });
        }
        // Seeds are for the first apply after a start; later ones must not resurrect them.
        self.seeds.clear();
        self.shared.publish(&table);
        drop(table);
        tracing::info!(kept, started, stopped, resumed, seeded, "health checks applied");
    }

    /// Verdicts known from before a restart, by region, for the next [`Prober::apply`]: a
    /// region it starts whose checks have the same fingerprint starts from its seed instead
    /// of `Unknown`.
    pub fn seed(&mut self, seeds: HashMap<String, Seed>) {
        self.seeds = seeds;
    }
}

/// A region's verdict from before a restart (see [`super::persist`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    /// Healthy or unhealthy (an unknown verdict is not worth saving).
    pub state: Verdict,
    /// When the region entered `state`.
    pub since: SystemTime,
    /// Its smoothed probe round-trip time in milliseconds, for the latency policy.
    pub rtt_ewma_ms: Option<f64>,
    /// [`RegionChecks::fingerprint`] of the checks that reached it.
    pub fingerprint: String,
}

/// The rise/fall machine of a check, with its window rule.
fn machine(c: &CheckConfig) -> Machine {
    Machine::new(c.rise, c.fall).with_window(c.window)
}

/// The machines of a region's changed checks: each new check takes over the machine of an
/// old check with the same probe target (the first one not taken yet: a check whose
/// timing, thresholds or expectations changed); a check with a new target starts from the
/// region's last verdict, with no streak.
fn resumed_machines(old: &RegionChecks, machines: &[Machine], new: &RegionChecks, region: Verdict) -> Vec<Machine> {
    let mut taken = vec![false; machines.len()];
    new.checks
        .iter()
        .map(|c| {
            let same = (0..machines.len().min(old.checks.len())).find(|&j| !taken[j] && old.checks[j].is_same_probe(c));
            match same {
                Some(j) => {
                    taken[j] = true;
                    machines[j].resume(c.rise, c.fall, c.window)
                }
                None => machine(c).seeded(region),
            }
        })
        .collect()
}

impl Drop for Prober {
    fn drop(&mut self) {
        for t in self.running.values().flat_map(|r| &r.tasks) {
            t.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still consistent enough to
        // keep probing with: every update is one region's entry.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, table: &Table) {
        let regions = table.regions.iter().map(|(k, e)| (k.clone(), e.health.clone())).collect();
        let fingerprints = table.regions.iter().map(|(k, e)| (k.clone(), e.fingerprint.clone())).collect();
        self.tx.send_replace(Arc::new(HealthTable { regions, fingerprints }));
    }

    /// Feeds one probe result into the region's machines, verdict, RTT and history.
    fn record(&self, region: &str, generation: u64, index: usize, outcome: ProbeOutcome) {
        let mut table = self.lock();
        let history = table.history;
        let Some(e) = table.regions.get_mut(region).filter(|e| e.generation == generation) else {
            return;
        };
        let Some(machine) = e.machines.get_mut(index) else {
            return;
        };
        let now = SystemTime::now();
        machine.observe(outcome.is_ok());
        let result = match &outcome {
            ProbeOutcome::Ok { .. } => "ok",
            ProbeOutcome::Fail(reason) => reason.kind(),
        };
        crate::metrics::probed(region, result, outcome.rtt());
        match &outcome {
            ProbeOutcome::Ok { rtt } => {
                e.health.rtt_ewma_ms = Some(ewma(e.health.rtt_ewma_ms, rtt.as_secs_f64() * 1000.0));
                tracing::debug!(region, check = index, rtt_ms = rtt.as_secs_f64() * 1000.0, "probe ok");
            }
            ProbeOutcome::Fail(reason) => {
                e.health.reason = Some(reason.clone());
                tracing::debug!(region, check = index, reason = %reason, "probe failed");
            }
        }
        let states: Vec<Verdict> = e.machines.iter().map(Machine::state).collect();
        let to = quorum(&states, e.need);
        let from = e.health.state;
        if to != from {
            e.health.state = to;
            e.health.since = now;
            e.health.transitions += 1;
            crate::metrics::health_changed(region, to.as_str());
            let reason = if to == Verdict::Healthy {
                e.health.reason = None;
                tracing::info!(region, from = %from, to = %to, reason = "probes pass", "region health changed");
                None
            } else {
                let reason = e.health.reason.as_ref().map_or_else(|| "no verdict".to_string(), ToString::to_string);
                tracing::warn!(region, from = %from, to = %to, reason = %reason, "region health changed");
                Some(reason)
            };
            crate::events::publish(crate::events::Change::Health {
                region: region.to_string(),
                from: from.as_str().to_string(),
                to: to.as_str().to_string(),
                reason,
            });
        }
        e.health.recent.push_back(ProbeRecord { at: now, check: index, outcome });
        while e.health.recent.len() > history {
            e.health.recent.pop_front();
        }
        self.publish(&table);
    }
}

/// The new smoothed RTT after one sample (the first sample is taken as is).
pub fn ewma(prev: Option<f64>, sample_ms: f64) -> f64 {
    match prev {
        None => sample_ms,
        Some(p) => EWMA_ALPHA * sample_ms + (1.0 - EWMA_ALPHA) * p,
    }
}

/// A uniformly random fraction in [0, 1).
fn unit() -> f64 {
    const STEPS: u64 = 1 << 20;
    fastrand::u64(..STEPS) as f64 / STEPS as f64
}

/// The wait before the next probe: interval ± [`JITTER`].
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 + JITTER * (2.0 * unit() - 1.0))
}

struct CheckJob {
    shared: Arc<Shared>,
    region: String,
    generation: u64,
    index: usize,
    probe: Probe,
    interval: Duration,
}

impl CheckJob {
    async fn run(self, mut shutdown: Shutdown) {
        let mut next = Instant::now() + self.interval.mul_f64(unit());
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.recv() => return,
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                o = self.probe.run() => o,
                _ = shutdown.recv() => return,
            };
            self.shared.record(&self.region, self.generation, self.index, outcome);
            next = started + jittered(self.interval);
        }
    }
}

#[cfg(test)]
mod tests;
