//! Where the inputs of region status meet: the configured regions ([`Gslb`]), what the
//! prober says ([`HealthTable`]) and what the operator says ([`Overrides`]: weight, drain,
//! force). Every change of any input goes through [`status`], so there is one place that
//! decides whether a region is answered.
//!
//! ```text
//! prober -HealthTable-> follow -> rebuild(state) -> new Snapshot { status, .. }
//! admin  -Overrides--->  follow (same rebuild)
//! SIGHUP -> load -> Prober::apply -> with_status(new snapshot, carried choices) -> store
//! ```

use std::sync::Arc;

use tokio::sync::watch;

use crate::gslb::Gslb;
use crate::gslb::status::{Mode, Status};
use crate::health::HealthTable;
use crate::load::LoadTable;
use crate::metrics;
use crate::overrides::Overrides;
use crate::region::RegionStatus;
use crate::shutdown::Shutdown;
use crate::snapshot::{SharedState, Snapshot};

/// Each configured region's effective state: a force in effect wins; else up per its health
/// (regions without checks always; `Unknown` per `unknown_is_up`); the weight after the
/// operator's weight or drain; the probes' smoothed RTT. `now`: seconds since the epoch,
/// for forces that expire.
pub fn region_inputs(
    gslb: &Gslb,
    health: &HealthTable,
    load: &LoadTable,
    unknown_is_up: bool,
    overrides: &Overrides,
    now: u64,
) -> Vec<RegionStatus> {
    gslb.regions
        .iter()
        .map(|r| {
            let ov = overrides.regions.get(&r.name);
            let forced = ov.and_then(|o| o.forced(now));
            RegionStatus {
                is_up: forced.unwrap_or_else(|| health.is_up(&r.name, unknown_is_up)),
                is_forced: forced.is_some(),
                weight: ov.map_or(r.weight, |o| o.effective_weight(r.weight)),
                rtt_ms: health.region(&r.name).and_then(|h| h.rtt_ewma_ms),
                utilisation: load.utilisation(&r.name),
            }
        })
        .collect()
}

/// The status of every region and service from all inputs. `prev` carries the latency
/// policy's choices (pass the status of the same `gslb`, or None).
pub fn status(
    gslb: &Gslb,
    health: &HealthTable,
    load: &LoadTable,
    overrides: &Overrides,
    prev: Option<&Status>,
) -> Status {
    let regions = region_inputs(gslb, health, load, gslb.unknown_is_up, overrides, crate::overrides::now());
    Status::build(gslb, regions, prev)
}

/// A snapshot fresh from a reload, with its status computed from the current inputs
/// instead of "all up", so storing it never briefly resurrects a down region. `prev`, the
/// snapshot it replaces, hands on what the status remembers: each latency service's choice
/// (its hysteresis), matched by service and region name, so a reload does not move clients.
pub fn with_status(
    snapshot: Snapshot,
    health: &HealthTable,
    load: &LoadTable,
    overrides: &Overrides,
    prev: Option<&Snapshot>,
) -> Snapshot {
    let new = &snapshot.gslb;
    let prev_rechosen = |i: usize| -> Option<crate::region::RegionId> {
        let prev = prev?;
        let name = &new.services.get(i)?.name;
        let old = prev.gslb.services.iter().position(|s| s.name == *name)?;
        let choice = prev.status.services.get(old)?.rechosen?;
        new.region_id(&prev.gslb.regions.get(choice as usize)?.name)
    };
    let regions = region_inputs(new, health, load, new.unknown_is_up, overrides, crate::overrides::now());
    let status = Arc::new(Status::build_with(new, regions, &prev_rechosen));
    Snapshot { status, ..snapshot }
}

/// Replaces the current snapshot's status. A reload that stores a new snapshot meanwhile
/// makes this retry on it (read-copy-update), so a status is never paired with the wrong
/// regions.
pub fn rebuild(state: &SharedState, health: &HealthTable, load: &LoadTable, overrides: &Overrides) {
    let prev = state.rcu(|prev| {
        let status = Arc::new(status(&prev.gslb, health, load, overrides, Some(&prev.status)));
        Snapshot { status, ..(**prev).clone() }
    });
    log_mode_changes(&prev, &state.load());
}

/// Like [`rebuild`], but reads the inputs inside the read-copy-update, so of two rebuilds
/// racing (the follower woken by a change, and the writer of the next change) the one that
/// stores last always used the newest health and overrides: a status built from inputs a
/// newer change replaced is never left in place, not even for a moment (it once was, for
/// a millisecond, between a change's own rebuild and the follower's late one).
pub fn rebuild_latest(
    state: &SharedState,
    health: impl Fn() -> Arc<HealthTable>,
    load: impl Fn() -> Arc<LoadTable>,
    overrides: impl Fn() -> Arc<Overrides>,
) {
    let prev = state.rcu(|prev| {
        let status = Arc::new(status(&prev.gslb, &health(), &load(), &overrides(), Some(&prev.status)));
        Snapshot { status, ..(**prev).clone() }
    });
    log_mode_changes(&prev, &state.load());
}

/// Logs and counts each service whose mode changed between two snapshots: once per
/// transition, never per query.
pub fn log_mode_changes(prev: &Snapshot, next: &Snapshot) {
    for (i, (service, now)) in next.gslb.services.iter().zip(&next.status.services).enumerate() {
        let before =
            prev.gslb.services.get(i).filter(|s| s.name == service.name).and_then(|_| prev.status.services.get(i));
        if before.map(|b| b.mode) == Some(now.mode) {
            continue;
        }
        let name = service.name.to_string();
        let from = before.map_or("new", |b| b.mode.as_str());
        crate::events::publish(crate::events::Change::Mode {
            service: name.clone(),
            from: from.to_string(),
            to: now.mode.as_str().to_string(),
        });
        match now.mode {
            Mode::Normal => tracing::info!(service = %name, from, to = now.mode.as_str(), "service mode"),
            _ => {
                tracing::warn!(service = %name, from, to = now.mode.as_str(), healthy = now.healthy, regions = service.regions.len(), "service mode")
            }
        }
        metrics::service_mode_changed(&name, now.mode.as_str());
    }
}

/// Rebuilds the status whenever the prober publishes a health table or the operator's
/// overrides change, until shutdown. Values published while a rebuild runs are coalesced:
/// the next rebuild uses the newest of each.
pub async fn follow(
    state: SharedState,
    mut health: watch::Receiver<Arc<HealthTable>>,
    mut load: watch::Receiver<Arc<LoadTable>>,
    mut overrides: watch::Receiver<Arc<Overrides>>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            changed = load.changed() => if changed.is_err() { return },
            changed = overrides.changed() => if changed.is_err() { return },
            _ = shutdown.recv() => return,
        }
        health.borrow_and_update();
        load.borrow_and_update();
        overrides.borrow_and_update();
        rebuild_latest(&state, || health.borrow().clone(), || load.borrow().clone(), || overrides.borrow().clone());
    }
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// No region of this name in the running configuration.
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    /// The overrides file could not be written, so nothing changed (the API answers 500).
    #[error("the change was not saved, so it was not made: {0}")]
    NotSaved(#[from] crate::overrides::StoreError),
    /// Cluster mode and etcd cannot take the write: nothing changed anywhere.
    #[error("cluster store unreachable; nothing changed ({0})")]
    ClusterUnreachable(String),
    /// Cluster mode: etcd answered and refused the request (e.g. its auth or permissions):
    /// nothing changed anywhere.
    #[error("cluster store refused the request; nothing changed ({0})")]
    ClusterRefused(String),
    /// Cluster mode: the write was sent to etcd and never confirmed, and reading it back
    /// failed too; it may be committed (then every instance applies it from the watch).
    #[error(
        "cluster store did not confirm the write; it may have been made: read /v1/status before sending it again ({0})"
    )]
    ClusterUnconfirmed(String),
    /// Cluster mode: the change would leave these services below their `min_healthy`
    /// (and the request did not say `"force": true`).
    #[error("the change would leave {} below min_healthy; nothing changed (send \"force\": true to make it anyway)", .0.join(", "))]
    WouldHurt(Vec<String>),
}

/// The services that `after` would leave with fewer serving regions (up and with a
/// weight above 0) than their `min_healthy`, and that `before` did not.
pub fn hurt_services(
    gslb: &Gslb,
    health: &HealthTable,
    before: &Overrides,
    after: &Overrides,
    now: u64,
) -> Vec<String> {
    let serving = |ov: &Overrides| -> Vec<bool> {
        region_inputs(gslb, health, &LoadTable::default(), gslb.unknown_is_up, ov, now)
            .iter()
            .map(|r| r.is_up && r.weight > 0)
            .collect()
    };
    let (was, will) = (serving(before), serving(after));
    let mut hurt = Vec::new();
    for s in &gslb.services {
        let total = s.regions.len();
        let needed = match s.min_healthy {
            crate::config::gslb::MinHealthy::Count(n) => n.min(total),
            crate::config::gslb::MinHealthy::Fraction(f) => ((f * total as f64).ceil() as usize).min(total),
        };
        let count = |v: &[bool]| s.regions.iter().filter(|&&r| v.get(usize::from(r)).copied().unwrap_or(false)).count();
        if count(&will) < needed && count(&was) >= needed {
            hurt.push(s.name.to_string());
        }
    }
    hurt
}

/// What the control plane owns besides the snapshot: the prober, the running config, and
/// the operator's overrides (saved, audited, published). Reloads and override changes take
/// its lock one at a time; the query path never does.
pub struct Control {
    /// The snapshot the DNS listeners answer from; swapped on every change.
    pub state: SharedState,
    source: crate::snapshot::Source,
    store: crate::overrides::Store,
    overrides_tx: watch::Sender<Arc<Overrides>>,
    health_rx: watch::Receiver<Arc<HealthTable>>,
    load_rx: watch::Receiver<Arc<LoadTable>>,
    /// Cluster mode: overrides live in etcd (None: standalone, as without `[cluster]`).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Cluster mode: the table answers are built from (the cluster's verdicts), which
    /// `health_rx` reads; the prober's own table goes to [`Control::cluster_round`].
    combined_tx: Option<watch::Sender<Arc<HealthTable>>>,
    /// Cluster mode: who probes each region and whether this instance fell back to its own
    /// probes, for the status.
    cluster_view: std::sync::Mutex<ClusterView>,
    inner: tokio::sync::Mutex<Inner>,
    ready: std::sync::atomic::AtomicBool,
    started: std::time::Instant,
}

struct Inner {
    cfg: crate::config::Config,
    prober: crate::health::Prober,
    poller: crate::load::Poller,
    /// The task saving verdicts to `health.json`; awaited at shutdown for its last save.
    saver: Option<tokio::task::JoinHandle<()>>,
    /// Cluster mode: the etcd mod revision of each region's override applied here, so a
    /// change seen twice (our own write, then the watch) or late is not applied again.
    cluster_revs: std::collections::BTreeMap<String, i64>,
    /// Cluster mode: the regions this instance probes (None: all, as standalone).
    probe_set: Option<std::collections::BTreeSet<String>>,
}

/// What cluster mode decided in its last round, for `/v1/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterView {
    /// Probing every region itself: not a member (etcd lost for over the lease TTL, or
    /// not joined yet).
    pub standalone: bool,
    /// Each region's probers and whether this instance fell back to its own probes.
    pub regions: Vec<RegionDuty>,
}

/// One region in cluster mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionDuty {
    /// The region's name.
    pub region: String,
    /// The members chosen to probe it, in preference order.
    pub probers: Vec<String>,
    /// Fresh observations (chosen prober, live, with a verdict).
    pub fresh_observers: usize,
    /// Too few fresh observations: this instance answers by its own probes.
    pub fallback: bool,
    /// Whether this instance probes it.
    pub probing: bool,
}

/// Keeps only the regions in `set` (all of them for None).
fn only(
    checks: Vec<crate::health::RegionChecks>,
    set: Option<&std::collections::BTreeSet<String>>,
) -> Vec<crate::health::RegionChecks> {
    match set {
        None => checks,
        Some(set) => checks.into_iter().filter(|c| set.contains(&c.name)).collect(),
    }
}

impl Control {
    /// Takes over the shared snapshot the sockets read: restores saved overrides, starts the
    /// prober and the status follower. Must run inside the tokio runtime.
    pub fn start(
        cfg: crate::config::Config,
        state: SharedState,
        source: crate::snapshot::Source,
        cluster: Option<Arc<crate::cluster::Cluster>>,
        shutdown: Shutdown,
    ) -> Result<Arc<Control>, crate::overrides::StoreError> {
        use crate::health::Prober;
        let store = crate::overrides::Store::new(cfg.admin.state_dir.clone());
        let saved = store.load()?;
        if !saved.regions.is_empty() {
            tracing::info!(regions = saved.regions.len(), dir = %store.dir().display(), "restored operator overrides");
        }
        let (overrides_tx, overrides_rx) = watch::channel(Arc::new(saved));
        let (mut prober, health_rx) = Prober::new(cfg.gslb.health.history, shutdown.clone());
        // Start from the verdicts saved before a restart (recent ones, same checks).
        prober.seed(crate::health::persist::restore(store.dir()));
        prober.apply(cfg.gslb.region_checks(), cfg.gslb.health.history);
        let (mut poller, load_rx) = crate::load::Poller::new(shutdown.clone());
        poller.apply(cfg.gslb.load_sources());
        rebuild(&state, &prober.table(), &load_rx.borrow(), &overrides_rx.borrow());
        let saver =
            tokio::spawn(crate::health::persist::run(store.dir().to_path_buf(), health_rx.clone(), shutdown.clone()));
        // Cluster mode: answers follow the cluster's verdicts, computed from the prober's
        // own table and the others' observations by `cluster_round`.
        let prober_rx = health_rx.clone();
        let (combined_tx, health_rx) = match &cluster {
            None => (None, health_rx),
            Some(_) => {
                let (tx, rx) = watch::channel(prober.table());
                (Some(tx), rx)
            }
        };
        tokio::spawn(follow(state.clone(), health_rx.clone(), load_rx.clone(), overrides_rx, shutdown.clone()));
        let control = Arc::new(Control {
            state,
            source,
            store,
            overrides_tx,
            health_rx,
            load_rx,
            cluster: cluster.clone(),
            combined_tx,
            cluster_view: Default::default(),
            inner: tokio::sync::Mutex::new(Inner {
                cfg,
                prober,
                poller,
                saver: Some(saver),
                cluster_revs: Default::default(),
                probe_set: None,
            }),
            ready: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
        });
        if let Some(cluster) = cluster {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(cluster.clone().run_watch(tx, shutdown.clone()));
            let c = control.clone();
            tokio::spawn(async move {
                while let Some(update) = rx.recv().await {
                    c.apply_cluster(update).await;
                }
            });
            tokio::spawn(control.clone().run_cluster_health(cluster, prober_rx, shutdown));
        }
        Ok(control)
    }

    /// Cluster mode: runs [`Control::cluster_round`] whenever the prober's table, the
    /// members or the observations change, and every second (forces, lease TTL).
    async fn run_cluster_health(
        self: Arc<Self>,
        cluster: Arc<crate::cluster::Cluster>,
        mut prober_rx: watch::Receiver<Arc<HealthTable>>,
        mut shutdown: Shutdown,
    ) {
        let mut changed = cluster.subscribe();
        let mut published = std::collections::BTreeMap::new();
        loop {
            // Every second, and at the moment the lease must count as lost (standalone then,
            // not up to a second later).
            let second = std::time::Duration::from_secs(1);
            let wake = cluster
                .standalone_at()
                .duration_since(std::time::SystemTime::now())
                .map_or(second, |d| d.min(second).max(std::time::Duration::from_millis(10)));
            tokio::select! {
                r = prober_rx.changed() => if r.is_err() { return },
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.recv() => return,
            }
            let own = prober_rx.borrow_and_update().clone();
            self.cluster_round(&cluster, &own, &mut published).await;
        }
    }

    /// One round of cluster health: which regions this instance probes (its rendezvous
    /// duties, plus regions with too few fresh observations, or every region once etcd has
    /// been lost for the lease TTL), its own verdicts published for its duties, and the
    /// table answers use: per region the verdict rule over the fresh observations, or this
    /// instance's own probes where there are too few (said in the log and the status).
    async fn cluster_round(
        &self,
        cluster: &crate::cluster::Cluster,
        own: &HealthTable,
        published: &mut std::collections::BTreeMap<String, (crate::cluster::duty::Observation, i64)>,
    ) {
        use crate::cluster::duty;
        use crate::health::{RegionHealth, Verdict};
        let (all_checks, history) = {
            let inner = self.inner.lock().await;
            (inner.cfg.gslb.region_checks(), inner.cfg.gslb.health.history)
        };
        let me = cluster.instance().to_string();
        let all_members = cluster.members();
        let is_member = all_members.iter().any(|m| m.instance == me);
        let is_ready = all_members.iter().any(|m| m.instance == me && m.ready);
        // Duties go to ready members only (one full probe round done since they joined).
        let members: Vec<(String, String)> =
            all_members.into_iter().filter(|m| m.ready).map(|m| (m.instance, m.site)).collect();
        let connected = cluster.is_connected();
        let lost_for_ttl = std::time::SystemTime::now() >= cluster.standalone_at();
        let standalone = lost_for_ttl || !is_member;
        let observations = cluster.observations();
        let k = cluster.cfg.probers_per_region as usize;
        let prev = self.combined_tx.as_ref().map(|tx| tx.borrow().clone()).unwrap_or_default();
        let mut view = ClusterView { standalone, regions: Vec::new() };
        let mut table = HealthTable { regions: Default::default(), fingerprints: own.fingerprints.clone() };
        let mut probe_set = std::collections::BTreeSet::new();
        let mut mine = Vec::new();
        for spec in &all_checks {
            let r = &spec.name;
            let chosen: Vec<String> = if standalone {
                Vec::new()
            } else {
                duty::probers(r, &members, k).into_iter().map(String::from).collect()
            };
            let fresh: Vec<&duty::Observation> = observations
                .get(r)
                .map(|o| {
                    o.iter()
                        .filter(|(i, obs)| chosen.contains(i) && obs.verdict() != Verdict::Unknown)
                        .map(|(_, obs)| obs)
                        .collect()
                })
                .unwrap_or_default();
            let fallback = standalone || fresh.len() < duty::needed(chosen.len());
            let assigned = chosen.contains(&me);
            // Not ready yet: probe everything once, to have a verdict of our own for each.
            if assigned || fallback || !is_ready {
                probe_set.insert(r.clone());
            }
            if assigned && !standalone {
                mine.push(r.clone());
            }
            let before = prev.region(r);
            let entry = if fallback {
                match (own.region(r), before) {
                    (Some(o), _) if o.state != Verdict::Unknown => Some(o.clone()),
                    // Our own probes have no verdict yet: keep what the cluster said.
                    (_, Some(b)) => Some(b.clone()),
                    (o, None) => o.cloned(),
                }
            } else {
                let verdicts: Vec<Verdict> = fresh.iter().map(|o| o.verdict()).collect();
                let state = duty::decide(cluster.cfg.verdict, &verdicts);
                let reason = (state == Verdict::Unhealthy).then(|| {
                    let down = verdicts.iter().filter(|v| **v == Verdict::Unhealthy).count();
                    let why = fresh.iter().find_map(|o| o.reason.clone()).unwrap_or_default();
                    crate::health::FailReason::Cluster(format!("{down} of {} probers: {why}", verdicts.len()))
                });
                let same = before.is_some_and(|b| b.state == state);
                Some(RegionHealth {
                    state,
                    since: before.filter(|_| same).map_or_else(std::time::SystemTime::now, |b| b.since),
                    reason,
                    rtt_ewma_ms: duty::median_rtt(fresh.iter().filter_map(|o| o.rtt_ewma_ms).collect()),
                    recent: own.region(r).map(|o| o.recent.clone()).unwrap_or_default(),
                    transitions: before.map_or(0, |b| b.transitions + u64::from(!same)),
                })
            };
            if let Some(e) = entry {
                if before.is_none_or(|b| b.state != e.state) {
                    tracing::info!(region = %r, to = %e.state, fallback, observers = fresh.len(), "cluster: region verdict");
                }
                table.regions.insert(r.clone(), e);
            }
            view.regions.push(RegionDuty {
                region: r.clone(),
                probers: chosen,
                fresh_observers: fresh.len(),
                fallback,
                probing: probe_set.contains(r),
            });
        }
        // Say when a region starts or stops being answered from this instance's own probes.
        {
            let old = self.cluster_view.lock().unwrap_or_else(|p| p.into_inner());
            for d in &view.regions {
                let was = old.regions.iter().find(|o| o.region == d.region).map(|o| o.fallback);
                if was != Some(d.fallback) && (was.is_some() || d.fallback) {
                    if d.fallback {
                        tracing::warn!(region = %d.region, observers = d.fresh_observers, standalone = view.standalone, "cluster: too few fresh observers; answering by this instance's own probes");
                    } else {
                        tracing::info!(region = %d.region, observers = d.fresh_observers, "cluster: region answered by the cluster's verdict again");
                    }
                }
            }
            if old.standalone != view.standalone && !old.regions.is_empty() {
                if view.standalone {
                    tracing::warn!("cluster: standalone: probing every region itself");
                } else {
                    tracing::info!("cluster: member again: probing its duties only");
                }
            }
        }
        *self.cluster_view.lock().unwrap_or_else(|p| p.into_inner()) = view;
        // The prober runs exactly this instance's duties.
        {
            let mut inner = self.inner.lock().await;
            if inner.probe_set.as_ref() != Some(&probe_set) {
                tracing::info!(regions = ?probe_set, "cluster: probing");
                inner.prober.apply(only(all_checks.clone(), Some(&probe_set)), history);
                inner.probe_set = Some(probe_set);
            }
        }
        // Ready once every region has a probe result of our own since we joined.
        if connected && is_member && !is_ready {
            let joined = cluster.joined_at();
            let round_done = all_checks.iter().all(|c| {
                own.region(&c.name)
                    .is_some_and(|h| h.state != Verdict::Unknown && h.recent.back().is_some_and(|p| p.at >= joined))
            });
            if round_done && let Err(e) = cluster.mark_ready().await {
                tracing::debug!(error = %e, "cluster: cannot mark this member ready");
            }
        }
        // Publish our verdicts for our duties when they change; withdraw the others.
        if connected {
            let lease = cluster.lease();
            for r in &mine {
                let Some(h) = own.region(r) else { continue };
                let obs = duty::Observation {
                    state: h.state.as_str().to_string(),
                    reason: h.reason.as_ref().map(ToString::to_string),
                    rtt_ewma_ms: h.rtt_ewma_ms,
                };
                let stale = published.get(r).is_none_or(|(p, l)| {
                    *l != lease
                        || p.state != obs.state
                        || p.reason != obs.reason
                        || match (p.rtt_ewma_ms, obs.rtt_ewma_ms) {
                            (Some(a), Some(b)) => (a - b).abs() > 0.2 * a.max(1.0),
                            (a, b) => a.is_some() != b.is_some(),
                        }
                });
                if stale && cluster.publish_observation(r, &obs).await.is_ok() {
                    published.insert(r.clone(), (obs, lease));
                }
            }
            let gone: Vec<String> = published.keys().filter(|r| !mine.contains(r)).cloned().collect();
            for r in gone {
                if cluster.withdraw_observation(&r).await.is_ok() {
                    published.remove(&r);
                }
            }
        }
        if let Some(tx) = &self.combined_tx {
            tx.send_if_modified(|cur| {
                if **cur == table {
                    false
                } else {
                    *cur = Arc::new(table);
                    true
                }
            });
        }
    }

    /// Makes `next` the overrides in force and in the answers before returning: published
    /// first, then the status rebuilt from the newest inputs (see [`rebuild_latest`]).
    fn publish_overrides(&self, next: Overrides) {
        self.overrides_tx.send_replace(Arc::new(next));
        rebuild_latest(
            &self.state,
            || self.health_rx.borrow().clone(),
            || self.load_rx.borrow().clone(),
            || self.overrides_tx.borrow().clone(),
        );
    }

    /// Cluster mode: the last round's duties and fallbacks.
    pub fn cluster_view(&self) -> ClusterView {
        self.cluster_view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cluster connection, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// Applies overrides from etcd (a full list or watched changes) that are newer than
    /// what this instance has, mirrors them to the state directory (so a restart while etcd
    /// is down still honours them) and audits each change as made elsewhere.
    async fn apply_cluster(&self, update: crate::cluster::Update) {
        use crate::cluster::Update;
        let mut inner = self.inner.lock().await;
        let current = self.overrides_tx.borrow().clone();
        let mut next = (*current).clone();
        next.version = 1;
        let mut changed: Vec<(String, Option<crate::overrides::RegionOverride>)> = Vec::new();
        // A force whose time is up was lifted here on this instance's clock; etcd may still
        // hold it. Compare without it, so a re-list does not apply and audit it again.
        let now = crate::overrides::now();
        let lifted = |mut o: crate::overrides::RegionOverride| {
            if o.force.is_some_and(|f| f.until.is_some_and(|u| now >= u)) {
                o.force = None;
            }
            (!o.is_empty()).then_some(o)
        };
        // Same weight, drain and force: no change to apply or audit (who and when may
        // differ after a local expiry).
        let same = |a: Option<&crate::overrides::RegionOverride>, b: Option<&crate::overrides::RegionOverride>| {
            a.map(|o| (o.weight, o.drained, o.force)) == b.map(|o| (o.weight, o.drained, o.force))
        };
        // Who made each change, also when it ends an override (an empty value still
        // carries who wrote it and where).
        let stamps: std::collections::BTreeMap<String, (String, String)> = match &update {
            Update::Full(all) => {
                all.iter().map(|(r, (o, _))| (r.clone(), (o.updated_by.clone(), o.updated_on.clone()))).collect()
            }
            Update::Changes(list) => list
                .iter()
                .filter_map(|(r, o, _)| o.as_ref().map(|o| (r.clone(), (o.updated_by.clone(), o.updated_on.clone()))))
                .collect(),
        };
        let update = match update {
            Update::Full(all) => {
                Update::Full(all.into_iter().filter_map(|(r, (o, rev))| Some((r, (lifted(o)?, rev)))).collect())
            }
            Update::Changes(list) => {
                Update::Changes(list.into_iter().map(|(r, o, rev)| (r, o.and_then(lifted), rev)).collect())
            }
        };
        match update {
            Update::Full(all) => {
                for region in current.regions.keys().filter(|r| !all.contains_key(*r)) {
                    changed.push((region.clone(), None));
                }
                inner.cluster_revs.clear();
                for (region, (o, rev)) in all {
                    inner.cluster_revs.insert(region.clone(), rev);
                    if !same(current.regions.get(&region), Some(&o)) {
                        changed.push((region, Some(o)));
                    }
                }
            }
            Update::Changes(list) => {
                for (region, o, rev) in list {
                    if inner.cluster_revs.get(&region).is_some_and(|&have| have >= rev) {
                        continue;
                    }
                    inner.cluster_revs.insert(region.clone(), rev);
                    if !same(current.regions.get(&region), o.as_ref()) {
                        changed.push((region, o));
                    }
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        for (region, o) in &changed {
            let old = current.regions.get(region).cloned().unwrap_or_default();
            let mut new = o.clone().unwrap_or_default();
            if o.is_none()
                && let Some((by, on)) = stamps.get(region)
            {
                (new.updated_by, new.updated_on) = (by.clone(), on.clone());
            }
            match o {
                Some(o) => next.regions.insert(region.clone(), o.clone()),
                None => next.regions.remove(region),
            };
            if self.state.load().gslb.region_id(region).is_none() {
                // Kept (a rolling config change may add the region here later), but it
                // changes no answer here: not audited as applied.
                tracing::info!(region, by = %new.updated_by, on = %new.updated_on, "override from the cluster for a region this configuration does not have; kept for when it has");
                continue;
            }
            let record = crate::overrides::AuditRecord {
                time: crate::overrides::now(),
                client: "cluster",
                token: &new.updated_by,
                instance: Some(if new.updated_on.is_empty() { "unknown" } else { &new.updated_on }),
                action: "applied-from-cluster",
                region,
                old: &old,
                new: &new,
            };
            if let Err(e) = self.store.audit(&record) {
                tracing::error!(error = %e, "audit log write failed");
            }
            tracing::info!(region, by = %new.updated_by, on = %new.updated_on, "override applied from the cluster");
        }
        // Forces whose time is up stay lifted (each instance lifts them on its own clock).
        crate::overrides::expire(&mut next, crate::overrides::now());
        if let Err(e) = self.store.save(&next) {
            tracing::error!(error = %e, "cannot mirror the cluster's overrides to the state directory");
        }
        self.publish_overrides(next);
    }

    /// Reloads config, zones, GeoIP and services: all or nothing. The prober gets the new
    /// checks first, so the stored snapshot's status already reflects the current health.
    /// Ok: the settings that changed but take effect only at the next restart (listen
    /// addresses, UDP workers, `[cluster]`), each named as in the config; each is also a
    /// warn line.
    pub async fn reload(&self) -> Result<Vec<&'static str>, Vec<crate::load_error::LoadError>> {
        let mut inner = self.inner.lock().await;
        let source = self.source.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || crate::snapshot::load(&source)).await.unwrap_or_else(|e| {
            Err(vec![crate::load_error::LoadError {
                location: crate::load_error::Location::default(),
                kind: crate::load_error::LoadErrorKind::ReloadFailed(e.to_string()),
            }])
        });
        let (cfg, snap) = match loaded {
            Ok(x) => x,
            Err(errors) => {
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "reload failed; still serving the previous configuration and zones"
                );
                metrics::reloaded(false);
                return Err(errors);
            }
        };
        let mut restart_needed = Vec::new();
        if cfg.dns.listen != inner.cfg.dns.listen || cfg.admin.listen != inner.cfg.admin.listen {
            tracing::warn!("listen addresses changed; the new addresses take effect at the next restart");
            restart_needed.push("listen addresses");
        }
        if (cfg.dns.udp_workers, cfg.dns.udp_steering) != (inner.cfg.dns.udp_workers, inner.cfg.dns.udp_steering) {
            tracing::warn!("dns.udp_workers or dns.udp_steering changed; the change takes effect at the next restart");
            restart_needed.push("dns.udp_workers, dns.udp_steering");
        }
        if cfg.cluster != inner.cfg.cluster {
            // The etcd connection, lease and watch are built once at start.
            tracing::warn!("[cluster] changed; the new cluster settings take effect at the next restart");
            restart_needed.push("[cluster]");
        }
        if cfg.dns.rrl != inner.cfg.dns.rrl {
            // Applied by each UDP worker at its next batch (the settings ride in the snapshot).
            tracing::info!(on = cfg.dns.rrl.is_some(), "dns.rrl changed; the new limits apply now");
        }
        let checks = only(cfg.gslb.region_checks(), inner.probe_set.as_ref());
        inner.prober.apply(checks, cfg.gslb.health.history);
        inner.poller.apply(cfg.gslb.load_sources());
        let snap = with_status(
            snap,
            &inner.prober.table(),
            &self.load_rx.borrow(),
            &self.overrides_tx.borrow(),
            Some(&self.state.load()),
        );
        let (zones, services) = (snap.zones.len(), snap.gslb.services.len());
        let prev = self.state.swap(Arc::new(snap));
        log_mode_changes(&prev, &self.state.load());
        if let Some(cluster) = &self.cluster {
            let geoip = cfg.gslb.geoip.as_deref();
            cluster
                .set_config_hash(crate::cluster::config_hash(&format!("{:?}", cfg.gslb), &cfg.zones_dir, geoip))
                .await;
        }
        inner.cfg = cfg;
        tracing::info!(zones, services, elapsed_ms = started.elapsed().as_millis() as u64, "reloaded");
        metrics::reloaded(true);
        Ok(restart_needed)
    }

    /// Changes one region's overrides: saved (atomically) and audited before it takes
    /// effect, and in the answers before this returns. If it cannot be saved, nothing
    /// changes.
    pub async fn set_override(
        &self,
        region: &str,
        client: &str,
        token: &str,
        action: &str,
        force: bool,
        change: impl Fn(&mut crate::overrides::RegionOverride) + Sync,
    ) -> Result<crate::overrides::RegionOverride, OverrideError> {
        let mut serial = self.inner.lock().await;
        if self.state.load().gslb.region_id(region).is_none() {
            return Err(OverrideError::UnknownRegion(region.to_string()));
        }
        let current = self.overrides_tx.borrow().clone();
        // Cluster mode's guard rail: one operator's change reaches every nameserver at
        // once, so a change that would take a service below min_healthy needs "force".
        if self.cluster.is_some() && !force {
            let mut after = (*current).clone();
            let mut o = after.regions.get(region).cloned().unwrap_or_default();
            change(&mut o);
            after.regions.insert(region.to_string(), o);
            let health = self.health_rx.borrow().clone();
            let hurt = hurt_services(&self.state.load().gslb, &health, &current, &after, crate::overrides::now());
            if !hurt.is_empty() {
                return Err(OverrideError::WouldHurt(hurt));
            }
        }
        let stamp = |o: &mut crate::overrides::RegionOverride| {
            o.updated_by = token.to_string();
            o.updated_at = crate::overrides::now();
            if let Some(c) = &self.cluster {
                o.updated_on = c.instance().to_string();
            }
        };
        let (old, new) = match &self.cluster {
            None => {
                let old = current.regions.get(region).cloned().unwrap_or_default();
                let mut new = old.clone();
                change(&mut new);
                stamp(&mut new);
                (old, new)
            }
            // Committed in etcd first (compare-and-swap), then applied here below, before
            // the caller answers: read-your-writes on this instance.
            Some(cluster) => {
                if !cluster.is_connected() {
                    return Err(OverrideError::ClusterUnreachable("not connected to etcd".into()));
                }
                let (old, new, rev) = cluster.write_override(region, &change, stamp).await.map_err(|e| match e {
                    crate::cluster::etcd::EtcdError::NoAnswer { .. } => {
                        OverrideError::ClusterUnconfirmed(e.to_string())
                    }
                    crate::cluster::etcd::EtcdError::Status { .. } => OverrideError::ClusterRefused(e.to_string()),
                    e => OverrideError::ClusterUnreachable(e.to_string()),
                })?;
                serial.cluster_revs.insert(region.to_string(), rev);
                (old, new)
            }
        };
        let mut next = (*current).clone();
        next.version = 1;
        if new.is_empty() {
            next.regions.remove(region);
        } else {
            next.regions.insert(region.to_string(), new.clone());
        }
        match (&self.cluster, self.store.save(&next)) {
            (_, Ok(())) => {}
            (None, Err(e)) => return Err(e.into()),
            // Committed in etcd: the mirror is a copy, its failure must not hide the change.
            (Some(_), Err(e)) => tracing::error!(error = %e, "cannot mirror overrides to the state directory"),
        }
        let record = crate::overrides::AuditRecord {
            time: new.updated_at,
            client,
            token,
            instance: self.cluster.as_ref().map(|c| c.instance()),
            action,
            region,
            old: &old,
            new: &new,
        };
        if let Err(e) = self.store.audit(&record) {
            // The change is saved and will be made; a lost audit line must be seen, not undo it.
            tracing::error!(error = %e, "audit log write failed");
        }
        let detail = match action {
            "weight" => new.weight.map(|w| w.to_string()).unwrap_or_default(),
            _ => match new.force.and_then(|f| f.until) {
                Some(until) if action.starts_with("force") => format!("until {until}"),
                _ => String::new(),
            },
        };
        // Before the rebuild, so the operator's change comes before the mode changes it causes.
        crate::events::publish(crate::events::Change::Override {
            region: region.to_string(),
            action: action.to_string(),
            by: token.to_string(),
            detail,
        });
        self.publish_overrides(next);
        tracing::info!(region, action, client, token, "override changed");
        Ok(new)
    }

    /// The services that `change` to `region` would take below their min_healthy: what
    /// [`Control::set_override`] refuses without `force` (its guard rail, checked the same
    /// way against the same inputs), for a dry run or to name a forced change. Empty
    /// without `[cluster]`, where that guard rail does not apply. Changes nothing.
    pub fn would_hurt(&self, region: &str, change: impl Fn(&mut crate::overrides::RegionOverride)) -> Vec<String> {
        if self.cluster.is_none() {
            return Vec::new();
        }
        let current = self.overrides_tx.borrow().clone();
        let mut after = (*current).clone();
        let mut o = after.regions.get(region).cloned().unwrap_or_default();
        change(&mut o);
        after.regions.insert(region.to_string(), o);
        let health = self.health_rx.borrow().clone();
        hurt_services(&self.state.load().gslb, &health, &current, &after, crate::overrides::now())
    }

    /// Drops forces whose time is up; called every second.
    pub async fn expire_forces(&self) {
        let _serial = self.inner.lock().await;
        let mut next = (**self.overrides_tx.borrow()).clone();
        let changed = crate::overrides::expire(&mut next, crate::overrides::now());
        if changed.is_empty() {
            return;
        }
        if let Err(e) = self.store.save(&next) {
            tracing::error!(error = %e, "cannot save expired overrides; will retry");
            return;
        }
        for (region, old, new) in &changed {
            let record = crate::overrides::AuditRecord {
                time: new.updated_at,
                client: "gslbd",
                token: "expiry",
                instance: self.cluster.as_ref().map(|c| c.instance()),
                action: "force-expired",
                region,
                old,
                new,
            };
            if let Err(e) = self.store.audit(&record) {
                tracing::error!(error = %e, "audit log write failed");
            }
            tracing::info!(region, "forced state expired; the prober decides again");
            crate::events::publish(crate::events::Change::Override {
                region: region.clone(),
                action: "force-expired".into(),
                by: "gslbd".into(),
                detail: String::new(),
            });
        }
        self.publish_overrides(next);
    }

    /// The operator's overrides now.
    pub fn overrides(&self) -> Arc<Overrides> {
        self.overrides_tx.borrow().clone()
    }

    /// The prober's health table now.
    pub fn health(&self) -> Arc<HealthTable> {
        self.health_rx.borrow().clone()
    }

    /// Every region's load as last published (ages are computed by the reader).
    pub fn load(&self) -> Arc<LoadTable> {
        self.load_rx.borrow().clone()
    }

    /// Marks the server ready (sockets bound, signal handlers in, ready line printed);
    /// `/readyz` answers 200 from then on.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Control::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the control plane was built (about the process's uptime).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Stops the prober's tasks now (they also stop on the shutdown signal) and, once the
    /// shutdown signal is sent, waits for the verdicts' last save.
    pub async fn stop(&self) {
        let mut inner = self.inner.lock().await;
        inner.prober.apply(Vec::new(), 1);
        inner.poller.apply(Vec::new());
        if let Some(saver) = inner.saver.take()
            && tokio::time::timeout(std::time::Duration::from_secs(2), saver).await.is_err()
        {
            tracing::warn!("health verdicts not saved within 2 s of shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::SystemTime;

    use super::*;
    use crate::health::{RegionHealth, Verdict};
    use crate::region::Region;

    fn gslb(unknown_is_up: bool) -> Gslb {
        let region = |name: &str| Region {
            name: name.into(),
            a: None,
            aaaa: None,
            cname: None,
            coordinates: None,
            weight: 7,
            priority: 100,
            bias_km: 0.0,
            capacity: None,
        };
        let mut g = Gslb::default();
        g.regions = vec![region("checked"), region("unknown"), region("no-checks")];
        g.unknown_is_up = unknown_is_up;
        g
    }

    fn table() -> HealthTable {
        let h = |state, rtt| RegionHealth {
            state,
            since: SystemTime::UNIX_EPOCH,
            reason: None,
            rtt_ewma_ms: rtt,
            recent: VecDeque::new(),
            transitions: 0,
        };
        let mut t = HealthTable::default();
        t.regions.insert("checked".into(), h(Verdict::Unhealthy, Some(12.5)));
        t.regions.insert("unknown".into(), h(Verdict::Unknown, None));
        t
    }

    #[test]
    fn inputs_follow_health_and_the_unknown_setting() {
        let none = Overrides::default();
        let up: Vec<bool> = region_inputs(&gslb(true), &table(), &LoadTable::default(), true, &none, 0)
            .iter()
            .map(|r| r.is_up)
            .collect();
        assert_eq!(up, [false, true, true]);
        let inputs = region_inputs(&gslb(false), &table(), &LoadTable::default(), false, &none, 0);
        assert_eq!(inputs.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(
            inputs[0],
            RegionStatus { is_up: false, is_forced: false, weight: 7, rtt_ms: Some(12.5), utilisation: None }
        );
    }

    #[test]
    fn overrides_force_and_drain_over_health() {
        use crate::overrides::{Force, RegionOverride};
        let mut ov = Overrides::default();
        let force = |up, until| RegionOverride { force: Some(Force { up, until }), ..Default::default() };
        ov.regions.insert("checked".into(), force(true, Some(100)));
        ov.regions.insert("no-checks".into(), RegionOverride { drained: true, ..Default::default() });
        let at = |now| region_inputs(&gslb(true), &table(), &LoadTable::default(), true, &ov, now);
        assert_eq!(at(99).iter().map(|r| (r.is_up, r.weight)).collect::<Vec<_>>(), [(true, 7), (true, 7), (true, 0)]);
        // The force expired: health decides again.
        assert!(!at(100)[0].is_up);
    }

    #[test]
    fn rebuild_swaps_only_the_status() {
        let g = Arc::new(gslb(true));
        let state = crate::snapshot::shared(Snapshot {
            gslb: g.clone(),
            status: Arc::new(Status::initial(&g)),
            ..Default::default()
        });
        let before = state.load_full();
        assert!(before.status.regions.iter().all(|r| r.is_up));
        rebuild(&state, &table(), &LoadTable::default(), &Overrides::default());
        let after = state.load_full();
        assert_eq!(after.status.regions.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, true, true]);
        assert!(Arc::ptr_eq(&before.zones, &after.zones) && Arc::ptr_eq(&before.gslb, &after.gslb));
    }

    /// A latency service over `regions` (margin 20 %), in a zone of its own.
    fn latency_gslb(regions: &[&str]) -> Arc<Gslb> {
        let zone = "$ORIGIN t.test.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.1\n";
        let mut toml = String::new();
        for (i, r) in regions.iter().enumerate() {
            toml += &format!("[regions.{r}]\naddresses = [\"192.0.2.{}\"]\n", i + 10);
        }
        let list: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
        toml += &format!(
            "[services.\"l.t.test\"]\nregions = [{}]\npolicy = \"latency\"\nlatency = {{ margin_percent = 20 }}\n",
            list.join(", ")
        );
        let cfg = crate::config::parse(&toml, std::path::Path::new("t.toml")).unwrap();
        let apex = crate::name::Name::parse("t.test.", None).unwrap();
        let recs = crate::zone::parse::parse_str(zone, "z".as_ref(), &apex, "/".as_ref()).unwrap();
        let zones =
            crate::zone::ZoneSet::new(vec![crate::zone::Zone::from_records(&apex, recs, "z".as_ref()).unwrap()]);
        Arc::new(Gslb::build(&cfg.gslb, &zones, None, "t.toml".as_ref()).unwrap())
    }

    fn rtts(pairs: &[(&str, f64)]) -> HealthTable {
        let mut t = HealthTable::default();
        for (name, rtt) in pairs {
            let h = RegionHealth {
                state: Verdict::Healthy,
                since: SystemTime::UNIX_EPOCH,
                reason: None,
                rtt_ewma_ms: Some(*rtt),
                recent: VecDeque::new(),
                transitions: 0,
            };
            t.regions.insert(name.to_string(), h);
        }
        t
    }

    #[test]
    fn a_reload_keeps_the_latency_choice_by_name() {
        let old = latency_gslb(&["a", "b"]);
        let choice =
            |snap: &Snapshot| snap.status.services[0].rechosen.map(|r| snap.gslb.regions[r as usize].name.clone());
        let ov = Overrides::default();
        let state = crate::snapshot::shared(Snapshot {
            gslb: old.clone(),
            status: Arc::new(Status::initial(&old)),
            ..Default::default()
        });
        rebuild(&state, &rtts(&[("a", 10.0), ("b", 30.0)]), &LoadTable::default(), &ov);
        // b is better now, but by less than the margin: a is kept.
        let near = rtts(&[("a", 12.0), ("b", 11.0)]);
        rebuild(&state, &near, &LoadTable::default(), &ov);
        assert_eq!(choice(&state.load()).as_deref(), Some("a"));
        // A reload adds a region that sorts first, so every region id moves; the choice
        // stays a, where a fresh start would pick b.
        let new = latency_gslb(&["0first", "a", "b"]);
        let fresh = Snapshot { gslb: new.clone(), status: Arc::new(Status::initial(&new)), ..Default::default() };
        let reloaded = with_status(fresh.clone(), &near, &LoadTable::default(), &ov, Some(&state.load()));
        assert_eq!(choice(&reloaded).as_deref(), Some("a"));
        assert_eq!(choice(&with_status(fresh, &near, &LoadTable::default(), &ov, None)).as_deref(), Some("b"));
    }
}
