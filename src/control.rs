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
use crate::gslb::status::{RegionStatus, Status};
use crate::health::HealthTable;
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
    state.rcu(|prev| {
        let status = Arc::new(status(&prev.gslb, health, overrides, Some(&prev.status)));
        Snapshot { status, ..(**prev).clone() }
    });
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
