//! Changes an operator wants to hear about: a region's health verdict, a service's mode, an
//! operator's override. Whoever makes the change publishes it here once (never per query);
//! the status page shows the recent ones and `[[notify]]` webhooks receive each of them.
//!
//! Publishing never blocks and never fails: the recent list is bounded, and each subscriber
//! has a bounded queue of its own; an event that does not fit a full queue is dropped for
//! that subscriber and counted (`gslbd_notify_dropped_total`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use serde::Serialize;
use tokio::sync::mpsc;

/// How many changes the status page can show.
pub const RECENT: usize = 50;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A region's health verdict changed (after rise/fall): `from`/`to` are `unknown`,
    /// `healthy`, `unhealthy`; `reason` is why the last probe failed, if it did.
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Health { region: String, from: String, to: String, reason: Option<String> },
    /// A service's mode changed: `normal`, `degraded`, `fail-open`, `all-down` (`from` is
    /// `new` for a service that appeared on reload).
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Mode { service: String, from: String, to: String },
    /// An operator changed a region's overrides through the admin API (or a force expired):
    /// `action` is `weight`, `drain`, `undrain`, `force-up`, `force-down`, `force-auto`,
    /// `force-expired`; `by` the token id.
    /// `detail` is the new weight, `until <epoch seconds>` for a timed force, or empty.
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Override { region: String, action: String, by: String, detail: String },
}

impl Change {
    /// The event kind, as webhooks filter on it and the page labels it.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Health { .. } => "health",
            Change::Mode { .. } => "mode",
            Change::Override { .. } => "override",
        }
    }

    /// The region or service the change is about.
    pub fn subject(&self) -> &str {
        match self {
            Change::Health { region, .. } | Change::Override { region, .. } => region,
            Change::Mode { service, .. } => service,
        }
    }

    /// One line for a human: `healthy -> unhealthy (timeout)`, `drain by ops`.
    pub fn describe(&self) -> String {
        match self {
            Change::Health { from, to, reason, .. } => match reason {
                Some(r) => format!("{from} -> {to} ({r})"),
                None => format!("{from} -> {to}"),
            },
            Change::Mode { from, to, .. } => format!("{from} -> {to}"),
            Change::Override { action, by, detail, .. } if detail.is_empty() => format!("{action} by {by}"),
            Change::Override { action, by, detail, .. } => format!("{action} {detail} by {by}"),
        }
    }
}

/// A change with its sequence number (per process, from 1) and time (seconds since the
/// Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Sequence number, from 1 in each process, without gaps.
    pub seq: u64,
    /// When the change was published, in seconds since the Unix epoch.
    pub at: u64,
    /// What changed (its fields are flattened into the event's JSON).
    #[serde(flatten)]
    pub change: Change,
}

/// A subscriber's queue and what it lost.
struct Subscriber {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The process's change feed.
pub struct Events {
    seq: AtomicU64,
    recent: Mutex<VecDeque<Event>>,
    subscribers: Mutex<Vec<Subscriber>>,
}

static EVENTS: LazyLock<Events> = LazyLock::new(|| Events {
    seq: AtomicU64::new(0),
    recent: Mutex::new(VecDeque::with_capacity(RECENT)),
    subscribers: Mutex::new(Vec::new()),
});

/// Publishes one change: kept among the recent ones and offered to every subscriber.
pub fn publish(change: Change) {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let event = Event { seq: EVENTS.seq.fetch_add(1, Ordering::Relaxed) + 1, at, change };
    {
        let mut recent = EVENTS.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
    }
    let mut subs = EVENTS.subscribers.lock().unwrap_or_else(|p| p.into_inner());
    subs.retain(|s| !s.tx.is_closed());
    for s in subs.iter() {
        if s.tx.try_send(event.clone()).is_err() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The recent changes, newest first.
pub fn recent() -> Vec<Event> {
    EVENTS.recent.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().cloned().collect()
}

/// A new subscriber with a queue of `capacity` events; the counter says how many did not
/// fit. Dropping the receiver unsubscribes.
pub fn subscribe(capacity: usize) -> (mpsc::Receiver<Event>, Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    EVENTS.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(Subscriber { tx, dropped: dropped.clone() });
    (rx, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(region: &str) -> Change {
        Change::Health {
            region: region.into(),
            from: "healthy".into(),
            to: "unhealthy".into(),
            reason: Some("timeout".into()),
        }
    }

    #[test]
    fn subscribers_get_every_change_in_order_and_a_full_queue_drops_and_counts() {
        // Other tests may publish meanwhile: look at ours only.
        let (mut rx, _) = subscribe(1000);
        let (mut tiny, dropped) = subscribe(1);
        for r in ["events-a", "events-b", "events-c"] {
            publish(health(r));
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        let ours: Vec<&str> = got.iter().map(|e| e.change.subject()).filter(|s| s.starts_with("events-")).collect();
        assert_eq!(ours, ["events-a", "events-b", "events-c"]);
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
        // The queue of one took the first and dropped (and counted) the rest.
        assert!(tiny.try_recv().is_ok());
        assert!(dropped.load(Ordering::Relaxed) >= 2);
        let recent = recent();
        assert_eq!(
            recent.iter().find(|e| e.change.subject().starts_with("events-")).unwrap().change.subject(),
            "events-c"
        );
        assert!(recent.len() <= RECENT);
    }

    #[test]
    fn events_serialize_flat_with_their_kind() {
        let e = Event { seq: 7, at: 100, change: health("eu-west") };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"seq": 7, "at": 100, "kind": "health", "region": "eu-west", "from": "healthy", "to": "unhealthy", "reason": "timeout"})
        );
        assert_eq!(e.change.describe(), "healthy -> unhealthy (timeout)");
        let o = Change::Override { region: "a".into(), action: "weight".into(), by: "ops".into(), detail: "10".into() };
        assert_eq!(o.describe(), "weight 10 by ops");
    }
}
