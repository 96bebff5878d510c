//! Where the inputs of region status meet: the configured regions ([`Gslb`]), what the
//! prober says ([`HealthTable`]) and, later, what the operator says ([`Overrides`]). Every
//! change of any input goes through [`status`], so there is one place that decides whether a
//! region is answered.
//!
//! ```text
//! prober -HealthTable-> follow_health -> rebuild(state) -> new Snapshot { status, .. }
//! SIGHUP -> load -> Prober::apply -> with_status(new snapshot) -> store
//! ```

use std::sync::Arc;

use tokio::sync::watch;

use crate::gslb::Gslb;
use crate::gslb::status::{RegionStatus, Status};
use crate::health::HealthTable;
use crate::state::{SharedState, Snapshot};

/// Operator overrides of region state (weight, drain, force up/down): none yet. A second
/// input of the same rebuild, so adding them touches [`region_inputs`] only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides;

impl Overrides {
    pub const NONE: Overrides = Overrides;
}

/// Each configured region's effective state: up per its health (regions without checks
/// always; `Unknown` per `unknown_is_up`), at its configured weight, with the probes'
/// smoothed RTT.
pub fn region_inputs(gslb: &Gslb, health: &HealthTable, unknown_is_up: bool) -> Vec<RegionStatus> {
    gslb.regions
        .iter()
        .map(|r| RegionStatus {
            is_up: health.is_up(&r.name, unknown_is_up),
            weight: r.weight,
            rtt_ms: health.region(&r.name).and_then(|h| h.rtt_ewma_ms),
        })
        .collect()
}

/// The status of every region and service from all inputs. `prev` carries the latency
/// policy's choices (pass the status of the same `gslb`, or None).
pub fn status(gslb: &Gslb, health: &HealthTable, _overrides: &Overrides, prev: Option<&Status>) -> Status {
    Status::build(gslb, region_inputs(gslb, health, gslb.unknown_is_up), prev)
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

/// Rebuilds the status on every published health table until shutdown. Tables published
/// while a rebuild runs are coalesced: the next rebuild uses the newest.
pub async fn follow_health(
    state: SharedState,
    mut health: watch::Receiver<Arc<HealthTable>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = health.changed() => {
                if changed.is_err() {
                    return;
                }
                let table = health.borrow_and_update().clone();
                rebuild(&state, &table, &Overrides::NONE);
            }
            _ = shutdown.wait_for(|&stop| stop) => return,
        }
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
        let up: Vec<bool> = region_inputs(&gslb(true), &table(), true).iter().map(|r| r.is_up).collect();
        assert_eq!(up, [false, true, true]);
        let inputs = region_inputs(&gslb(false), &table(), false);
        assert_eq!(inputs.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(inputs[0], RegionStatus { is_up: false, weight: 7, rtt_ms: Some(12.5) });
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
        rebuild(&state, &table(), &Overrides::NONE);
        let after = state.load_full();
        assert_eq!(after.status.regions.iter().map(|r| r.is_up).collect::<Vec<_>>(), [false, true, true]);
        assert!(Arc::ptr_eq(&before.zones, &after.zones) && Arc::ptr_eq(&before.gslb, &after.gslb));
    }
}
