//! The load poller: one task per region with a load source, each reading on its own
//! jittered schedule (the first read after a random delay within one interval, then every
//! `interval ± 10%`, start to start), bounded by the source's timeout, off the query path,
//! as the prober does for health. Each region's [`Tracker`] lives in one table; a new
//! immutable [`LoadTable`] is published on the watch channel when what steering sees
//! changed, and the control loop rebuilds the status from it. Every other good reading
//! replaces the table silently (its receivers are not woken), so the raw value and the
//! reading's age that the admin API and the metrics show are always the newest.
//!
//! Logs: one line when a region's source changes state (good readings, failing for a
//! reason, load unknown), never one per poll.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::source::{self, LoadConfig};
use super::{LoadTable, RegionLoad, Tracker, stale_after};
use crate::shutdown::Shutdown;

/// Polls every region's load source on its own schedule (interval with jitter, timeout),
/// off the query path, and publishes the [`LoadTable`] when a reading changes.
pub struct Poller {
    shared: Arc<Shared>,
    running: HashMap<String, (LoadConfig, JoinHandle<()>)>,
    shutdown: Shutdown,
}

struct Shared {
    trackers: Mutex<BTreeMap<String, (u64, Tracker)>>,
    tx: watch::Sender<Arc<LoadTable>>,
}

impl Poller {
    /// A poller with no sources yet, and the receiver of its tables; its tasks end on
    /// `shutdown`.
    pub fn new(shutdown: Shutdown) -> (Poller, watch::Receiver<Arc<LoadTable>>) {
        let (tx, rx) = watch::channel(Arc::new(LoadTable::default()));
        let shared = Arc::new(Shared { trackers: Mutex::new(BTreeMap::new()), tx });
        (Poller { shared, running: HashMap::new(), shutdown }, rx)
    }

    /// Every region's load now, with the age of its readings (for the admin API).
    pub fn snapshot(&self) -> BTreeMap<String, RegionLoad> {
        self.shared.lock().iter().map(|(k, (_, t))| (k.clone(), t.load.clone())).collect()
    }

    /// Reconciles the running sources with `sources` (region name, config): unchanged ones
    /// keep their task and readings, changed ones start afresh, removed ones stop.
    pub fn apply(&mut self, sources: Vec<(String, LoadConfig)>) {
        let wanted: HashMap<&str, &LoadConfig> = sources.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let mut trackers = self.shared.lock();
        self.running.retain(|name, (cfg, task)| {
            if wanted.get(name.as_str()).is_some_and(|w| *w == cfg) {
                return true;
            }
            task.abort();
            trackers.remove(name);
            false
        });
        for (name, cfg) in sources {
            if self.running.contains_key(&name) {
                continue;
            }
            let generation = fastrand::u64(..);
            let tracker = Tracker::new(cfg.type_name(), stale_after(cfg.interval, cfg.timeout));
            trackers.insert(name.clone(), (generation, tracker));
            let job = Job {
                shared: self.shared.clone(),
                region: name.clone(),
                generation,
                client: http_client(&name, &cfg),
                cfg: cfg.clone(),
            };
            let task = tokio::spawn(job.run(self.shutdown.clone()));
            self.running.insert(name, (cfg, task));
        }
        self.shared.publish(&trackers);
    }
}

/// One source's HTTP client: no pooled connections and no proxy, so each read sees the
/// balancer as it is now. For an https URL, TLS trusts the source's `tls_ca_file` or else
/// the system's roots (as https checks do); reqwest is built without a crypto provider of
/// its own, so the config is always given. None if it cannot be built: every read then
/// fails, and says why.
fn http_client(region: &str, cfg: &LoadConfig) -> Option<reqwest::Client> {
    let https = cfg.url.starts_with("https://");
    let tls = match crate::health::probe::http::client_tls(https, false, &cfg.tls_ca) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(region, error = %e, "cannot set up TLS for the load source; its load stays unknown");
            return None;
        }
    };
    let built = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::health::probe::USER_AGENT)
        .tls_backend_preconfigured(tls)
        .build();
    match built {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(region, error = %e, "cannot build the load source's HTTP client; its load stays unknown");
            None
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        for (_, t) in self.running.values() {
            t.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, Tracker)>> {
        // Every update is one region's tracker: still consistent after a panic elsewhere.
        self.trackers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, trackers: &BTreeMap<String, (u64, Tracker)>) {
        let regions = trackers.iter().map(|(k, (_, t))| (k.clone(), t.load.clone())).collect();
        self.tx.send_replace(Arc::new(LoadTable { regions }));
    }

    fn record(&self, region: &str, generation: u64, result: Result<f64, source::LoadFailure>) {
        let mut trackers = self.lock();
        let Some((_, t)) = trackers.get_mut(region).filter(|(g, _)| *g == generation) else { return };
        let before = state(&t.load);
        match &result {
            Ok(_) => crate::metrics::load_read(region, None),
            Err(f) => crate::metrics::load_read(region, Some(f.kind())),
        }
        let changed = t.observe(result, SystemTime::now());
        let after = state(&t.load);
        if before != after {
            let u = t.load.utilisation;
            match (&t.load.failure, u) {
                (None, _) => tracing::info!(region, utilisation = u, "load readings good"),
                (Some(f), Some(_)) => {
                    tracing::warn!(region, reason = %f, "load reading failed; keeping the last reading until it is stale")
                }
                (Some(f), None) => {
                    tracing::warn!(region, reason = %f, "load unknown; load steps ignore this region's load")
                }
            }
        }
        if changed || before != after {
            self.publish(&trackers);
        } else {
            self.refresh(&trackers);
        }
    }

    /// Puts the trackers' newest readings (raw value, time of the last good reading) in the
    /// table without waking its receivers: what steering sees is unchanged (the dead band
    /// held), so the status is not rebuilt, yet the admin API and the metrics, which read
    /// the table when asked, show the reading's true age. (Before, the age was that of the
    /// last value published, and grew while good readings came in every interval.)
    fn refresh(&self, trackers: &BTreeMap<String, (u64, Tracker)>) {
        self.tx.send_if_modified(|table| {
            let regions = trackers.iter().map(|(k, (_, t))| (k.clone(), t.load.clone())).collect();
            *table = Arc::new(LoadTable { regions });
            // Only the reading's value and time moved, never the utilisation or the state
            // (those are published above): no receiver needs to act on it.
            false
        });
    }
}

/// What a state change is: good, or failing for a reason, and whether the load is known.
fn state(l: &RegionLoad) -> (Option<&'static str>, bool) {
    (l.failure.as_ref().map(|f| f.kind()), l.utilisation.is_some())
}

struct Job {
    shared: Arc<Shared>,
    region: String,
    generation: u64,
    cfg: LoadConfig,
    client: Option<reqwest::Client>,
}

impl Job {
    async fn run(self, mut shutdown: Shutdown) {
        let mut next = Instant::now() + self.cfg.interval.mul_f64(fastrand::f64());
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.recv() => return,
            }
            let started = Instant::now();
            let result = tokio::select! {
                r = async {
                    match &self.client {
                        Some(c) => source::read(c, &self.cfg).await,
                        None => Err(source::LoadFailure::Connect("no HTTP client (see the log at start)".into())),
                    }
                } => r,
                _ = shutdown.recv() => return,
            };
            self.shared.record(&self.region, self.generation, result);
            next = started + crate::health::prober::jittered(self.cfg.interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::SourceKind;

    fn source(url: &str) -> LoadConfig {
        LoadConfig {
            kind: SourceKind::Json { value: "/u".into(), capacity: None },
            url: url.into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            tls_ca: Vec::new(),
        }
    }

    /// Waits until the published table satisfies `f`.
    async fn until(rx: &mut watch::Receiver<Arc<LoadTable>>, f: impl Fn(&LoadTable) -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !f(&rx.borrow_and_update()) {
                let _ = rx.changed().await;
            }
        })
        .await
        .expect("the table never got there");
    }

    /// A balancer on loopback whose load page always says `{"u": 0.3}`.
    async fn constant_source() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = conn.read(&mut request).await;
                    let body = r#"{"u": 0.3}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/load")
    }

    #[tokio::test]
    async fn a_steady_load_keeps_its_reading_age_fresh_without_republishing() {
        let (_trigger, shutdown) = Shutdown::new();
        let (mut poller, mut rx) = Poller::new(shutdown);
        poller.apply(vec![("a".into(), source(&constant_source().await))]);
        until(&mut rx, |t| t.utilisation("a") == Some(0.3)).await;
        // Ten more readings of the same value: inside the dead band, so no new table is
        // announced (no status rebuild), yet the table read now has the newest reading's time.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!rx.has_changed().unwrap(), "a reading inside the dead band woke the status rebuild");
        let table = rx.borrow().clone();
        let age = table.regions["a"].age(SystemTime::now()).unwrap();
        assert!(age < 0.5, "readings every 100 ms, yet the last good one is {age:.2} s old");
        assert_eq!(table.utilisation("a"), Some(0.3));
    }

    #[tokio::test]
    async fn apply_starts_keeps_restarts_and_stops_sources() {
        let (_trigger, shutdown) = Shutdown::new();
        let (mut poller, mut rx) = Poller::new(shutdown);
        // Nothing listens on port 9 of loopback: every read fails at once.
        let dead = source("http://127.0.0.1:9/load");
        poller.apply(vec![("a".into(), dead.clone())]);
        until(&mut rx, |t| {
            t.regions.get("a").is_some_and(|l| l.failure.as_ref().is_some_and(|f| f.kind() == "connect"))
        })
        .await;
        assert_eq!(poller.snapshot()["a"].source, "json");
        // Unchanged: the same task and readings.
        let before = poller.running["a"].1.id();
        poller.apply(vec![("a".into(), dead.clone())]);
        assert_eq!(poller.running["a"].1.id(), before);
        assert!(poller.snapshot()["a"].failure.is_some(), "readings kept");
        // Changed: a new task, and the readings start afresh.
        poller.apply(vec![("a".into(), source("http://127.0.0.1:9/other"))]);
        assert_ne!(poller.running["a"].1.id(), before);
        assert_eq!(poller.snapshot()["a"].failure, None);
        // Removed: gone from the table.
        poller.apply(Vec::new());
        until(&mut rx, |t| t.regions.is_empty()).await;
        assert!(poller.running.is_empty());
    }
}
