//! Where the inputs of region status meet: the configured regions ([`Gslb`]), what the
//! prober says ([`HealthTable`]) and what the operator says ([`Overrides`]: weight, drain,
//! force). Every change of any input goes through [`status`], so there is one place that
//! decides whether a region is answered.
//!
//! ```text
//! prober -HealthTable-> follow -> rebuild(state) -> new Snapshot { status, .. }
//! admin  -Overrides--->  follow (same rebuild)
//! SIGHUP -> load -> Prober::apply -> with_status(new snapshot) -> store
//! ```

use std::sync::Arc;

use tokio::sync::watch;

use crate::gslb::Gslb;
use crate::gslb::status::{Mode, RegionStatus, Status};
use crate::health::HealthTable;
use crate::metrics;
use crate::overrides::Overrides;
use crate::state::{SharedState, Snapshot};

/// Each configured region's effective state: a force in effect wins; else up per its health
/// (regions without checks always; `Unknown` per `unknown_is_up`); the weight after the
/// operator's weight or drain; the probes' smoothed RTT. `now`: seconds since the epoch,
/// for forces that expire.
pub fn region_inputs(
    gslb: &Gslb,
    health: &HealthTable,
    unknown_is_up: bool,
    overrides: &Overrides,
    now: u64,
) -> Vec<RegionStatus> {
    gslb.regions
        .iter()
        .map(|r| {
            let ov = overrides.regions.get(&r.name);
            RegionStatus {
                is_up: ov.and_then(|o| o.forced(now)).unwrap_or_else(|| health.is_up(&r.name, unknown_is_up)),
                weight: ov.map_or(r.weight, |o| o.effective_weight(r.weight)),
                rtt_ms: health.region(&r.name).and_then(|h| h.rtt_ewma_ms),
            }
        })
        .collect()
}

/// The status of every region and service from all inputs. `prev` carries the latency
/// policy's choices (pass the status of the same `gslb`, or None).
pub fn status(gslb: &Gslb, health: &HealthTable, overrides: &Overrides, prev: Option<&Status>) -> Status {
    let regions = region_inputs(gslb, health, gslb.unknown_is_up, overrides, crate::overrides::now());
    Status::build(gslb, regions, prev)
}

/// A snapshot fresh from a reload, with its status computed from the current inputs
/// instead of "all up", so storing it never briefly resurrects a down region.
pub fn with_status(snapshot: Snapshot, health: &HealthTable, overrides: &Overrides) -> Snapshot {
    let status = Arc::new(status(&snapshot.gslb, health, overrides, None));
    Snapshot { status, ..snapshot }
}

/// Replaces the current snapshot's status. A reload that stores a new snapshot meanwhile
/// makes this retry on it (read-copy-update), so a status is never paired with the wrong
/// regions.
pub fn rebuild(state: &SharedState, health: &HealthTable, overrides: &Overrides) {
    let prev = state.rcu(|prev| {
        let status = Arc::new(status(&prev.gslb, health, overrides, Some(&prev.status)));
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
        match now.mode {
            Mode::Normal => tracing::info!(service = %name, from, to = now.mode.as_str(), "service mode"),
            _ => {
                tracing::warn!(service = %name, from, to = now.mode.as_str(), healthy = now.healthy, regions = service.regions.len(), "service mode")
            }
        }
        metrics::count(
            "gslbd_service_mode_changes_total",
            "Service mode changes (to normal, degraded, fail-open, all-down).",
            metrics::labels(&[("service", &name), ("mode", now.mode.as_str())]),
        );
    }
}

/// Rebuilds the status whenever the prober publishes a health table or the operator's
/// overrides change, until shutdown. Values published while a rebuild runs are coalesced:
/// the next rebuild uses the newest of each.
pub async fn follow(
    state: SharedState,
    mut health: watch::Receiver<Arc<HealthTable>>,
    mut overrides: watch::Receiver<Arc<Overrides>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            changed = overrides.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|&stop| stop) => return,
        }
        let table = health.borrow_and_update().clone();
        let ov = overrides.borrow_and_update().clone();
        rebuild(&state, &table, &ov);
    }
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    #[error("the change was not saved, so it was not made: {0}")]
    NotSaved(#[from] crate::overrides::StoreError),
}

/// What the control plane owns besides the snapshot: the prober, the running config, and
/// the operator's overrides (saved, audited, published). Reloads and override changes take
/// its lock one at a time; the query path never does.
pub struct Control {
    pub state: SharedState,
    source: crate::state::Source,
    store: crate::overrides::Store,
    overrides_tx: watch::Sender<Arc<Overrides>>,
    health_rx: watch::Receiver<Arc<HealthTable>>,
    inner: tokio::sync::Mutex<Inner>,
    ready: std::sync::atomic::AtomicBool,
    started: std::time::Instant,
}

struct Inner {
    cfg: crate::config::Config,
    prober: crate::health::Prober,
}

impl Control {
    /// Takes over the shared snapshot the sockets read: restores saved overrides, starts the
    /// prober and the status follower. Must run inside the tokio runtime.
    pub fn start(
        cfg: crate::config::Config,
        state: SharedState,
        source: crate::state::Source,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Control>, crate::overrides::StoreError> {
        use crate::health::{Prober, RegionChecks};
        let store = crate::overrides::Store::new(cfg.admin.state_dir.clone());
        let saved = store.load()?;
        if !saved.regions.is_empty() {
            tracing::info!(regions = saved.regions.len(), dir = %store.dir().display(), "restored operator overrides");
        }
        let (overrides_tx, overrides_rx) = watch::channel(Arc::new(saved));
        let (mut prober, health_rx) = Prober::new(cfg.gslb.health.history, shutdown.clone());
        prober.apply(RegionChecks::from_config(&cfg.gslb), cfg.gslb.health.history);
        rebuild(&state, &prober.table(), &overrides_rx.borrow());
        tokio::spawn(follow(state.clone(), health_rx.clone(), overrides_rx, shutdown));
        Ok(Arc::new(Control {
            state,
            source,
            store,
            overrides_tx,
            health_rx,
            inner: tokio::sync::Mutex::new(Inner { cfg, prober }),
            ready: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
        }))
    }

    /// Reloads config, zones, GeoIP and services: all or nothing. The prober gets the new
    /// checks first, so the stored snapshot's status already reflects the current health.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        use crate::health::RegionChecks;
        let mut inner = self.inner.lock().await;
        let source = self.source.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || crate::state::load(&source))
            .await
            .unwrap_or_else(|e| Err(vec![format!("error: reload task failed: {e}")]));
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
                metrics::count(
                    "gslbd_reloads_total",
                    "Reloads of config and zones, by result.",
                    metrics::labels(&[("result", "failed")]),
                );
                metrics::gauge("gslbd_reload_last_success", "1 if the last reload succeeded.", String::new(), 0.0);
                return Err(errors);
            }
        };
        if cfg.dns.listen != inner.cfg.dns.listen || cfg.admin.listen != inner.cfg.admin.listen {
            tracing::warn!("listen addresses changed; the new addresses take effect at the next restart");
        }
        if (cfg.dns.udp_workers, cfg.dns.udp_steering) != (inner.cfg.dns.udp_workers, inner.cfg.dns.udp_steering) {
            tracing::warn!("dns.udp_workers or dns.udp_steering changed; the change takes effect at the next restart");
        }
        if cfg.dns.rrl != inner.cfg.dns.rrl {
            // Applied by each UDP worker at its next batch (the settings ride in the snapshot).
            tracing::info!(on = cfg.dns.rrl.is_some(), "dns.rrl changed; the new limits apply now");
        }
        inner.prober.apply(RegionChecks::from_config(&cfg.gslb), cfg.gslb.health.history);
        let snap = with_status(snap, &inner.prober.table(), &self.overrides_tx.borrow());
        let (zones, services) = (snap.zones.len(), snap.gslb.services.len());
        let prev = self.state.swap(Arc::new(snap));
        log_mode_changes(&prev, &self.state.load());
        inner.cfg = cfg;
        tracing::info!(zones, services, elapsed_ms = started.elapsed().as_millis() as u64, "reloaded");
        metrics::count(
            "gslbd_reloads_total",
            "Reloads of config and zones, by result.",
            metrics::labels(&[("result", "ok")]),
        );
        metrics::gauge("gslbd_reload_last_success", "1 if the last reload succeeded.", String::new(), 1.0);
        Ok(())
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
        change: impl FnOnce(&mut crate::overrides::RegionOverride),
    ) -> Result<crate::overrides::RegionOverride, OverrideError> {
        let _serial = self.inner.lock().await;
        if self.state.load().gslb.region_id(region).is_none() {
            return Err(OverrideError::UnknownRegion(region.to_string()));
        }
        let current = self.overrides_tx.borrow().clone();
        let old = current.regions.get(region).cloned().unwrap_or_default();
        let mut new = old.clone();
        change(&mut new);
        new.updated_by = token.to_string();
        new.updated_at = crate::overrides::now();
        let mut next = (*current).clone();
        next.version = 1;
        if new.is_empty() {
            next.regions.remove(region);
        } else {
            next.regions.insert(region.to_string(), new.clone());
        }
        self.store.save(&next)?;
        let record =
            crate::overrides::AuditRecord { time: new.updated_at, client, token, action, region, old: &old, new: &new };
        if let Err(e) = self.store.audit(&record) {
            // The change is saved and will be made; a lost audit line must be seen, not undo it.
            tracing::error!(error = %e, "audit log write failed");
        }
        let next = Arc::new(next);
        rebuild(&self.state, &self.health_rx.borrow().clone(), &next);
        self.overrides_tx.send_replace(next);
        tracing::info!(region, action, client, token, "override changed");
        Ok(new)
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
                action: "force-expired",
                region,
                old,
                new,
            };
            if let Err(e) = self.store.audit(&record) {
                tracing::error!(error = %e, "audit log write failed");
            }
            tracing::info!(region, "forced state expired; the prober decides again");
        }
        let next = Arc::new(next);
        rebuild(&self.state, &self.health_rx.borrow().clone(), &next);
        self.overrides_tx.send_replace(next);
    }

    pub fn overrides(&self) -> Arc<Overrides> {
        self.overrides_tx.borrow().clone()
    }

    pub fn health(&self) -> Arc<HealthTable> {
        self.health_rx.borrow().clone()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Stops the prober's tasks now (they also stop on the shutdown signal).
    pub async fn stop(&self) {
        let mut inner = self.inner.lock().await;
        inner.prober.apply(Vec::new(), 1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::SystemTime;

    use super::*;
    use crate::gslb::Region;
    use crate::health::{RegionHealth, State};

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
        t.regions.insert("checked".into(), h(State::Unhealthy, Some(12.5)));
        t.regions.insert("unknown".into(), h(State::Unknown, None));
        t
    }

    #[test]
    fn inputs_follow_health_and_the_unknown_setting() {
        let none = Overrides::default();
        let up: Vec<bool> = region_inputs(&gslb(true), &table(), true, &none, 0).iter().map(|r| r.is_up).collect();
        assert_eq!(up, [false, true, true]);
        let inputs = region_inputs(&gslb(false), &table(), false, &none, 0);
        assert_eq!(inputs.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(inputs[0], RegionStatus { is_up: false, weight: 7, rtt_ms: Some(12.5) });
    }

    #[test]
    fn overrides_force_and_drain_over_health() {
        use crate::overrides::{Force, RegionOverride};
        let mut ov = Overrides::default();
        let force = |up, until| RegionOverride { force: Some(Force { up, until }), ..Default::default() };
        ov.regions.insert("checked".into(), force(true, Some(100)));
        ov.regions.insert("no-checks".into(), RegionOverride { drained: true, ..Default::default() });
        let at = |now| region_inputs(&gslb(true), &table(), true, &ov, now);
        assert_eq!(at(99).iter().map(|r| (r.is_up, r.weight)).collect::<Vec<_>>(), [(true, 7), (true, 7), (true, 0)]);
        // The force expired: health decides again.
        assert!(!at(100)[0].is_up);
    }

    #[test]
    fn rebuild_swaps_only_the_status() {
        let g = Arc::new(gslb(true));
        let state = crate::state::shared(Snapshot {
            gslb: g.clone(),
            status: Arc::new(Status::initial(&g)),
            ..Default::default()
        });
        let before = state.load_full();
        assert!(before.status.regions.iter().all(|r| r.is_up));
        rebuild(&state, &table(), &Overrides::default());
        let after = state.load_full();
        assert_eq!(after.status.regions.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, true, true]);
        assert!(Arc::ptr_eq(&before.zones, &after.zones) && Arc::ptr_eq(&before.gslb, &after.gslb));
    }
}
