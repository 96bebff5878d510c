//! Cluster mode: gslbd instances sharing the operator's overrides through etcd, members
//! known by their leases.
//!
//! ```text
//! admin API -> control::set_override -> Cluster::write_override (CAS txn) -> etcd
//!                                    \-> applied here before the 200 (read-your-writes)
//! etcd -watch-> Cluster::run_overrides -Update-> control (apply, mirror to state_dir)
//! Cluster::run_membership: lease keep-alive, member list, rejoin after a lost lease
//! ```
//!
//! Keys, under the configured prefix `P`:
//! - `P/overrides/REGION`: the region's [`RegionOverride`] as JSON.
//! - `P/members/INSTANCE`: a [`Member`] as JSON, attached to the instance's lease.
//!
//! DNS never waits on any of this: the query path reads snapshots only, and every etcd call
//! has a deadline.

pub mod duty;
pub mod etcd;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::cluster::ClusterConfig;
use crate::overrides::RegionOverride;
use crate::shutdown::Shutdown;
use etcd::{Etcd, EtcdError, WatchItem};

/// What a member publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its `[cluster] instance` name, unique among live members.
    pub instance: String,
    /// Its `[cluster] site`: probers of a region are chosen from distinct sites first.
    pub site: String,
    /// Its admin API address (or DNS address without an admin API).
    pub address: String,
    /// The gslbd version it runs.
    pub version: String,
    /// SHA-256 (hex, 16 digits) of its config file, zone files and GeoIP database: members
    /// whose hash differs answer differently.
    pub config_hash: String,
    /// Whether it has completed one full probe round since it (re)joined: only ready
    /// members get probe duties, so a member that just started or came back from an etcd
    /// outage takes no region over before it has its own verdicts.
    #[serde(default)]
    pub ready: bool,
}

/// Overrides from etcd for the control loop: the whole set after a (re-)list, or changes
/// from the watch. Each entry carries the key's mod revision, so the control loop applies
/// a change only if it is newer than what it has (its own writes come back through the
/// watch too).
#[derive(Debug)]
pub enum Update {
    /// Every region's override after a (re-)list, with its mod revision.
    Full(BTreeMap<String, (RegionOverride, i64)>),
    /// (region, new value or None when deleted, mod revision).
    Changes(Vec<(String, Option<RegionOverride>, i64)>),
}

#[derive(Debug, thiserror::Error)]
/// Why this instance could not join the cluster.
pub enum JoinError {
    #[error(
        "cluster: instance name {instance:?} is already live in the cluster (member at {address})\n  hint: give each gslbd its own [cluster] instance, or stop the other one; a stopped instance's name is free within lease_ttl"
    )]
    /// Another live member already uses this instance name (`address`: where it is).
    #[allow(missing_docs, reason = "the fields are named in the variant's doc")]
    Duplicate { instance: String, address: String },
    #[error(transparent)]
    /// etcd could not be asked.
    Etcd(#[from] EtcdError),
}

/// The cluster connection of this instance.
pub struct Cluster {
    /// The `[cluster]` table it was built from.
    pub cfg: ClusterConfig,
    etcd: Etcd,
    /// This member's record (its config hash changes on reload).
    me: std::sync::Mutex<Member>,
    /// Whether this member has done its full probe round since it joined.
    ready: AtomicBool,
    lease: AtomicI64,
    connected: AtomicBool,
    /// Since when `connected` has had its current value.
    since: std::sync::Mutex<SystemTime>,
    /// The last time etcd answered a call: the lease cannot have expired before this plus
    /// its TTL, and is taken as expired after it.
    last_contact: std::sync::Mutex<SystemTime>,
    members: std::sync::Mutex<Vec<Member>>,
    /// Values in etcd we ignored (bad JSON, unknown keys, wrong types).
    bad_values: AtomicU64,
    /// (key, mod revision) of the ignored values already logged and counted: a value is
    /// reported once, not at every re-list.
    reported: std::sync::Mutex<std::collections::HashSet<(String, i64)>>,
    /// The members whose config hash differed at the last look (logged when it changes).
    drift: std::sync::Mutex<Vec<String>>,
    /// A live member with our name was found after we started: said once.
    duplicate_said: AtomicBool,
    /// The probers' published observations: region -> instance -> observation.
    observations: std::sync::Mutex<BTreeMap<String, BTreeMap<String, duty::Observation>>>,
    /// Bumped whenever members or observations change, for the control loop.
    changed: tokio::sync::watch::Sender<u64>,
    /// Wakes the watch when etcd is reachable again, so a stream silently cut by a
    /// partition is replaced (with a fresh list) instead of waited on forever.
    reconnected: tokio::sync::Notify,
    /// When this instance last took its member key (with `ready: false`).
    joined_at: std::sync::Mutex<SystemTime>,
}

/// Fields an override value in etcd may have; anything else makes the value ignored.
const OVERRIDE_FIELDS: [&str; 6] = ["weight", "drained", "force", "updated_by", "updated_at", "updated_on"];

impl Cluster {
    /// A connection for this member; nothing is sent until it joins.
    pub fn new(cfg: ClusterConfig, me: Member) -> Result<Arc<Cluster>, EtcdError> {
        let etcd = Etcd::new(cfg.etcd.clone(), &cfg.tls, cfg.credentials.clone())?;
        Ok(Arc::new(Cluster {
            cfg,
            etcd,
            me: std::sync::Mutex::new(me),
            ready: AtomicBool::new(false),
            lease: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            since: std::sync::Mutex::new(SystemTime::now()),
            last_contact: std::sync::Mutex::new(SystemTime::now()),
            members: Default::default(),
            bad_values: AtomicU64::new(0),
            reported: Default::default(),
            drift: Default::default(),
            duplicate_said: AtomicBool::new(false),
            observations: Default::default(),
            changed: tokio::sync::watch::channel(0).0,
            reconnected: tokio::sync::Notify::new(),
            joined_at: std::sync::Mutex::new(SystemTime::now()),
        }))
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.cfg.instance
    }

    fn overrides_prefix(&self) -> String {
        format!("{}/overrides/", self.cfg.prefix)
    }

    fn members_prefix(&self) -> String {
        format!("{}/members/", self.cfg.prefix)
    }

    fn health_prefix(&self) -> String {
        format!("{}/health/", self.cfg.prefix)
    }

    /// Wakes whoever waits on [`Cluster::subscribe`].
    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A receiver that sees a change whenever members or observations change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The observations published for each region, by instance.
    pub fn observations(&self) -> BTreeMap<String, BTreeMap<String, duty::Observation>> {
        self.observations.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publishes this instance's observation of `region`, attached to its lease (so it
    /// disappears with the instance). Nothing is written before the instance has joined.
    pub async fn publish_observation(&self, region: &str, obs: &duty::Observation) -> Result<(), EtcdError> {
        let lease = self.lease.load(Ordering::Relaxed);
        if lease == 0 {
            return Ok(());
        }
        let key = format!("{}{region}/{}", self.health_prefix(), self.cfg.instance);
        let value = serde_json::to_vec(obs).unwrap_or_default();
        self.etcd.put(&key, &value, lease).await
    }

    /// Withdraws this instance's observation of `region` (its duty moved elsewhere).
    pub async fn withdraw_observation(&self, region: &str) -> Result<(), EtcdError> {
        let key = format!("{}{region}/{}", self.health_prefix(), self.cfg.instance);
        self.etcd.delete(&key).await
    }

    /// When this instance last joined (its probe round for readiness counts from here).
    pub fn joined_at(&self) -> SystemTime {
        *self.joined_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Says in this instance's member record that it has completed a full probe round, so
    /// the others give it probe duties.
    pub async fn mark_ready(&self) -> Result<(), EtcdError> {
        let lease = self.lease();
        if lease == 0 {
            return Ok(());
        }
        self.ready.store(true, Ordering::Relaxed);
        self.publish_me().await?;
        tracing::info!(instance = %self.cfg.instance, "cluster: one full probe round done; taking probe duties");
        Ok(())
    }

    /// Writes this member's record (with its readiness and config hash now) under its lease.
    async fn publish_me(&self) -> Result<(), EtcdError> {
        let lease = self.lease();
        if lease == 0 {
            return Ok(());
        }
        let key = format!("{}{}", self.members_prefix(), self.cfg.instance);
        let me = Member { ready: self.ready.load(Ordering::Relaxed), ..self.me() };
        self.etcd.put(&key, &serde_json::to_vec(&me).unwrap_or_default(), lease).await
    }

    /// A reload changed the settings, zones or GeoIP database: the member record carries the
    /// new hash, so every member's drift check sees it (published now when joined, else at
    /// the next join).
    pub async fn set_config_hash(&self, hash: String) {
        let changed = {
            let mut me = self.me.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut me.config_hash, hash) != me.config_hash
        };
        if changed {
            if let Err(e) = self.publish_me().await {
                tracing::warn!(error = %e, "cluster: cannot publish the new config hash; it goes out at the next join");
            }
            self.check_drift();
        }
    }

    /// Logs once and counts a value under the prefix that gslbd did not write (each key at
    /// each revision once, however often it is listed again).
    fn ignore(&self, key: &str, revision: i64, what: &str, error: &str) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if reported.len() > 10_000 {
            reported.clear();
        }
        if reported.insert((key.to_string(), revision)) {
            self.bad_values.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key, error, "cluster: ignoring {what} gslbd did not write");
        }
    }

    /// A member record at `key`, if it is one gslbd wrote (its instance is the key's last
    /// label); otherwise ignored (logged and counted once).
    fn decode_member(&self, key: &str, revision: i64, value: &[u8]) -> Option<Member> {
        let instance = key.strip_prefix(&self.members_prefix()).unwrap_or(key);
        match serde_json::from_slice::<Member>(value) {
            Ok(m) if m.instance == instance => Some(m),
            Ok(m) => {
                self.ignore(key, revision, "a member record", &format!("names instance {:?}", m.instance));
                None
            }
            Err(e) => {
                self.ignore(key, revision, "a member record", &e.to_string());
                None
            }
        }
    }

    /// Logs when the set of members with another config hash than ours changes.
    fn check_drift(&self) {
        let mine = self.me().config_hash;
        let differing: Vec<String> =
            self.members().into_iter().filter(|m| m.config_hash != mine).map(|m| m.instance).collect();
        let mut last = self.drift.lock().unwrap_or_else(|p| p.into_inner());
        if *last != differing {
            if differing.is_empty() {
                tracing::info!("cluster: every member has the same config, zones and GeoIP database again");
            } else {
                tracing::warn!(members = ?differing, "cluster: members with a different config, zones or GeoIP database");
            }
            *last = differing;
        }
    }

    /// The current lease (0: not joined).
    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Applies one member or observation key (None: deleted) to the local view; true if
    /// it was one.
    fn apply_shared_key(&self, key: &str, revision: i64, value: Option<&[u8]>) -> bool {
        if let Some(instance) = key.strip_prefix(&self.members_prefix()) {
            let decoded = value.and_then(|v| self.decode_member(key, revision, v));
            {
                let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
                members.retain(|m| m.instance != instance);
                members.extend(decoded);
                members.sort_by(|a, b| a.instance.cmp(&b.instance));
            }
            self.check_drift();
            return true;
        }
        if let Some(rest) = key.strip_prefix(&self.health_prefix()) {
            let Some((region, instance)) = rest.split_once('/') else { return false };
            let mut all = self.observations.lock().unwrap_or_else(|p| p.into_inner());
            let decoded = value.map(|v| {
                serde_json::from_slice::<duty::Observation>(v)
                    .map_err(|e| e.to_string())
                    .and_then(|o| o.check().map(|()| o))
            });
            match decoded {
                None => {
                    if let Some(r) = all.get_mut(region) {
                        r.remove(instance);
                    }
                }
                Some(Ok(o)) => {
                    all.entry(region.to_string()).or_default().insert(instance.to_string(), o);
                }
                Some(Err(error)) => {
                    // Not half applied: whatever that instance said before stands until
                    // it writes a good one (or its key goes with its lease).
                    drop(all);
                    self.ignore(key, revision, "a health observation", &error);
                }
            }
            return true;
        }
        false
    }

    /// Whether etcd answered the last keep-alive (the `gslbd_cluster_connected` metric).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether etcd is reachable and since when (or since when not).
    pub fn connection(&self) -> (bool, SystemTime) {
        (self.is_connected(), *self.since.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// When this instance goes standalone if etcd does not answer before: the last answer
    /// from etcd plus the lease TTL (keep-alives every third of the TTL move it on).
    /// Counted from the last answer, not from the first failed call, so the switch is not
    /// late by a keep-alive period, nor by calls that hang on a member without quorum.
    pub fn standalone_at(&self) -> SystemTime {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) + self.cfg.lease_ttl
    }

    /// etcd did not answer (or refused us): `why` goes into the warn line of the change.
    fn disconnected(&self, why: &dyn std::fmt::Display) {
        if self.connected.swap(false, Ordering::Relaxed) {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
            tracing::warn!(
                instance = %self.cfg.instance,
                reason = %why,
                "cluster: etcd unreachable or refusing; answering from the last overrides, admin changes refused"
            );
        }
    }

    /// etcd answered: the last contact is now, and a change back to connected is logged
    /// and wakes the watch (to list again).
    fn answered(&self) {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        if !self.connected.swap(true, Ordering::Relaxed) {
            *self.since.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
            self.reconnected.notify_waiters();
            tracing::info!(instance = %self.cfg.instance, "cluster: connected to etcd");
        }
    }

    /// The live members as last listed (this one included once joined).
    pub fn members(&self) -> Vec<Member> {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This instance's own record.
    pub fn me(&self) -> Member {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Values found in etcd that gslbd did not write and ignored (`gslbd_cluster_ignored_values_total`).
    pub fn bad_values(&self) -> u64 {
        self.bad_values.load(Ordering::Relaxed)
    }

    /// Reads an override value written by anyone: None (with one log line and a count)
    /// unless it is a JSON object of known fields with the right types.
    fn decode_override(&self, key: &str, revision: i64, value: &[u8]) -> Option<RegionOverride> {
        let parsed = serde_json::from_slice::<Value>(value).map_err(|e| e.to_string()).and_then(|v| {
            let obj = v.as_object().ok_or("not a JSON object")?;
            if let Some(k) = obj.keys().find(|k| !OVERRIDE_FIELDS.contains(&k.as_str())) {
                return Err(format!("unknown field {k:?}"));
            }
            serde_json::from_value::<RegionOverride>(v).map_err(|e| e.to_string())
        });
        match parsed {
            Ok(o) => Some(o),
            Err(error) => {
                self.ignore(key, revision, "an override", &error);
                None
            }
        }
    }

    fn region_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.overrides_prefix()).filter(|r| !r.is_empty() && !r.contains('/'))
    }

    /// Changes one region's override with compare-and-swap: read, change, write if nobody
    /// wrote in between, else again. Returns the old and new value and the write's revision.
    /// A value in etcd gslbd cannot read counts as no override (and is replaced).
    ///
    /// A write whose answer was lost (timeout after sending) may have been committed: the
    /// key is read again, and finding exactly the bytes sent (they carry this instance, the
    /// token and the time) means it was. When that read fails too the error is
    /// [`EtcdError::NoAnswer`]: the caller must not say "nothing changed".
    pub async fn write_override(
        &self,
        region: &str,
        change: &(dyn Fn(&mut RegionOverride) + Sync),
        stamp: impl Fn(&mut RegionOverride),
    ) -> Result<(RegionOverride, RegionOverride, i64), EtcdError> {
        let key = format!("{}{region}", self.overrides_prefix());
        // The last attempt whose outcome is unknown: old value, new value, bytes sent.
        let mut unknown: Option<(RegionOverride, RegionOverride, Option<Vec<u8>>, i64)> = None;
        for _ in 0..16 {
            let read = self.etcd.range(&key, false).await.inspect_err(|e| self.disconnected(e));
            let (kvs, store_rev) = match (read, &unknown) {
                (Ok(read), _) => read,
                // Nothing was written yet: a read without an answer changed nothing.
                (Err(EtcdError::NoAnswer { endpoint, message }), None) => {
                    return Err(EtcdError::Unreachable { endpoint, message });
                }
                (Err(e), None) => return Err(e),
                (Err(e), Some(_)) => {
                    return Err(EtcdError::NoAnswer {
                        endpoint: String::new(),
                        message: format!("the write was sent, and reading it back failed: {e}"),
                    });
                }
            };
            if let Some((old, new, sent, rev_before)) = unknown.take() {
                let landed = match (kvs.first(), &sent) {
                    (Some(kv), Some(bytes)) => (kv.value == *bytes).then_some(kv.mod_revision),
                    // A deletion landed when the key that was there is gone (no later write
                    // can be older than this read's revision).
                    (None, None) if rev_before > 0 => Some(store_rev),
                    _ => None,
                };
                if let Some(rev) = landed {
                    self.answered();
                    tracing::info!(key, "a write whose answer was lost was found committed");
                    return Ok((old, new, rev));
                }
            }
            let (old, rev) = match kvs.first() {
                Some(kv) => {
                    (self.decode_override(&key, kv.mod_revision, &kv.value).unwrap_or_default(), kv.mod_revision)
                }
                None => (RegionOverride::default(), 0),
            };
            let mut new = old.clone();
            change(&mut new);
            stamp(&mut new);
            // An override back to nothing is written too, not deleted: the other instances
            // then know who ended the drain or the force (their audit lines say so).
            let value = Some(
                serde_json::to_vec(&new)
                    .map_err(|e| EtcdError::Decode { path: key.clone(), message: e.to_string() })?,
            );
            match self.etcd.compare_and_put(&key, rev, value.as_deref(), 0).await {
                Ok(Some(written)) => {
                    self.answered();
                    return Ok((old, new, written));
                }
                Ok(None) => {}
                Err(EtcdError::NoAnswer { .. }) => unknown = Some((old, new, value, rev)),
                Err(e) => return Err(e),
            }
        }
        if unknown.is_some() {
            return Err(EtcdError::NoAnswer {
                endpoint: String::new(),
                message: format!("the write to {key} was sent and never confirmed"),
            });
        }
        Err(EtcdError::Decode { path: key, message: "too many concurrent writers; try again".into() })
    }

    /// Lists everything under the prefix: the overrides (returned, with the store
    /// revision), and the members and observations (taken into the local view).
    async fn list_all(&self) -> Result<(BTreeMap<String, (RegionOverride, i64)>, i64), EtcdError> {
        let (kvs, revision) = self.etcd.range(&format!("{}/", self.cfg.prefix), true).await?;
        let mut all = BTreeMap::new();
        self.members.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.observations.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for kv in kvs {
            if let Some(region) = self.region_of(&kv.key) {
                if let Some(o) = self.decode_override(&kv.key, kv.mod_revision, &kv.value) {
                    all.insert(region.to_string(), (o, kv.mod_revision));
                }
            } else {
                self.apply_shared_key(&kv.key, kv.mod_revision, Some(&kv.value));
            }
        }
        self.bump();
        Ok((all, revision))
    }

    /// Keeps the control loop's overrides equal to etcd's until shutdown: list, then watch
    /// from the next revision; a broken watch resumes where it stopped, a compacted one
    /// lists again.
    pub async fn run_watch(self: Arc<Self>, tx: mpsc::Sender<Update>, mut shutdown: Shutdown) {
        let mut resume_from = None;
        loop {
            let step = async {
                let mut next = match resume_from {
                    Some(rev) => rev,
                    None => {
                        let (all, revision) = self.list_all().await?;
                        if tx.send(Update::Full(all)).await.is_err() {
                            return Ok(None);
                        }
                        revision + 1
                    }
                };
                let mut watch = self.etcd.watch(&format!("{}/", self.cfg.prefix), next).await?;
                resume_from = Some(next);
                loop {
                    match watch.next().await? {
                        WatchItem::Compacted(rev) => {
                            tracing::info!(compacted = rev, "cluster: watch revision compacted; listing again");
                            return Ok(Some(()));
                        }
                        WatchItem::Events(events) => {
                            let mut changes = Vec::new();
                            let mut shared = false;
                            for e in events {
                                next = next.max(e.kv.mod_revision + 1);
                                let Some(region) = self.region_of(&e.kv.key) else {
                                    let value = (!e.is_delete).then_some(e.kv.value.as_slice());
                                    shared |= self.apply_shared_key(&e.kv.key, e.kv.mod_revision, value);
                                    continue;
                                };
                                if e.is_delete {
                                    changes.push((region.to_string(), None, e.kv.mod_revision));
                                } else if let Some(o) = self.decode_override(&e.kv.key, e.kv.mod_revision, &e.kv.value)
                                {
                                    changes.push((region.to_string(), Some(o), e.kv.mod_revision));
                                }
                            }
                            resume_from = Some(next);
                            if shared {
                                self.bump();
                            }
                            if !changes.is_empty() && tx.send(Update::Changes(changes)).await.is_err() {
                                return Ok(None);
                            }
                        }
                    }
                }
            };
            let result: Result<Option<()>, EtcdError> = tokio::select! {
                r = step => r,
                // etcd is back after an outage: list again rather than trust a stream that
                // may have been cut without a word.
                _ = self.reconnected.notified() => Ok(Some(())),
                _ = shutdown.recv() => return,
            };
            match result {
                Ok(None) => return,
                // Compacted: list again.
                Ok(Some(())) => resume_from = None,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: watch broken; resuming");
                    // A broken stream is the first sign of a lost etcd: check the lease now
                    // rather than at the next keep-alive.
                    let lease = self.lease();
                    if lease != 0 {
                        match self.etcd.keep_alive(lease).await {
                            Ok(true) => {}
                            Ok(false) => self.disconnected(&"the lease expired"),
                            Err(e) => self.disconnected(&e),
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        _ = shutdown.recv() => return,
                    }
                }
            }
        }
    }

    /// Takes this instance's member key under a new lease. Refused when another live member
    /// holds the name; the key of this instance's own previous life (its lease id saved in
    /// `state_dir`) is taken over.
    pub async fn join(&self, state_dir: &Path) -> Result<(), JoinError> {
        let key = format!("{}{}", self.members_prefix(), self.cfg.instance);
        let lease = self.etcd.grant(self.cfg.lease_ttl).await?;
        self.ready.store(false, Ordering::Relaxed);
        let me = Member { ready: false, ..self.me() };
        let value = serde_json::to_vec(&me).unwrap_or_default();
        let previous_lease = read_saved_lease(state_dir);
        let (kvs, _) = self.etcd.range(&key, false).await?;
        let rev = match kvs.first() {
            None => 0,
            Some(kv) if Some(kv.lease) == previous_lease || kv.lease == self.lease.load(Ordering::Relaxed) => {
                kv.mod_revision
            }
            Some(kv) => {
                let _ = self.etcd.revoke(lease).await;
                let address = serde_json::from_slice::<Member>(&kv.value).map(|m| m.address).unwrap_or_default();
                return Err(JoinError::Duplicate { instance: self.cfg.instance.clone(), address });
            }
        };
        if self.etcd.compare_and_put(&key, rev, Some(&value), lease).await?.is_none() {
            let _ = self.etcd.revoke(lease).await;
            return Err(JoinError::Duplicate { instance: self.cfg.instance.clone(), address: "unknown".into() });
        }
        self.lease.store(lease, Ordering::Relaxed);
        *self.joined_at.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        if let Err(e) = std::fs::create_dir_all(state_dir)
            .and_then(|()| std::fs::write(state_dir.join("cluster-lease"), lease.to_string()))
        {
            tracing::warn!(error = %e, "cluster: cannot save the lease id; a restart within lease_ttl may be refused");
        }
        self.answered();
        self.refresh_members().await?;
        tracing::info!(instance = %self.cfg.instance, site = %self.cfg.site, lease, "cluster: joined");
        Ok(())
    }

    /// Lists the members again. Our own record missing while our lease lives (someone
    /// deleted it) is written again at once, so the member list and the duplicate-name
    /// check keep seeing us.
    async fn refresh_members(&self) -> Result<(), EtcdError> {
        let (kvs, _) = self.etcd.range(&self.members_prefix(), true).await?;
        let mut members: Vec<Member> =
            kvs.iter().filter_map(|kv| self.decode_member(&kv.key, kv.mod_revision, &kv.value)).collect();
        if self.lease() != 0 && !members.iter().any(|m| m.instance == self.cfg.instance) {
            tracing::warn!(instance = %self.cfg.instance, "cluster: our member record was gone from etcd; writing it again");
            self.publish_me().await?;
            members.push(Member { ready: self.ready.load(Ordering::Relaxed), ..self.me() });
        }
        members.sort_by(|a, b| a.instance.cmp(&b.instance));
        let changed = {
            let mut mine = self.members.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *mine != members;
            *mine = members;
            changed
        };
        self.check_drift();
        if changed {
            self.bump();
        }
        Ok(())
    }

    /// Members whose config hash differs from this instance's.
    pub fn differing_members(&self) -> Vec<String> {
        let mine = self.me().config_hash;
        self.members().into_iter().filter(|m| m.config_hash != mine).map(|m| m.instance).collect()
    }

    /// Keeps the lease alive (every third of its TTL) and the member list fresh until
    /// shutdown; joins again after the lease is lost or etcd comes back; revokes the lease
    /// on shutdown so the name is free at once.
    pub async fn run_membership(self: Arc<Self>, state_dir: std::path::PathBuf, mut shutdown: Shutdown) {
        let period = self.cfg.lease_ttl / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.recv() => break,
            }
            let lease = self.lease.load(Ordering::Relaxed);
            let alive = if lease == 0 { Ok(false) } else { self.etcd.keep_alive(lease).await };
            match alive {
                Ok(true) => {
                    self.answered();
                    if let Err(e) = self.refresh_members().await {
                        tracing::debug!(error = %e, "cluster: cannot list members");
                    }
                }
                Ok(false) => {
                    if lease != 0 {
                        tracing::warn!(lease, "cluster: lease lost; joining again");
                    }
                    match self.join(&state_dir).await {
                        Ok(()) => self.duplicate_said.store(false, Ordering::Relaxed),
                        Err(e @ JoinError::Duplicate { .. }) => {
                            self.disconnected(&"this instance's name is live elsewhere");
                            // Found after start (etcd was unreachable then): keep serving
                            // standalone, say it once, join when the name is free.
                            if !self.duplicate_said.swap(true, Ordering::Relaxed) {
                                tracing::error!("{e}; serving standalone until the name is free");
                            }
                        }
                        Err(JoinError::Etcd(e)) => {
                            self.disconnected(&e);
                            tracing::debug!(error = %e, "cluster: cannot join");
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster: lease keep-alive failed");
                    self.disconnected(&e);
                }
            }
        }
        let lease = self.lease.load(Ordering::Relaxed);
        if lease != 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.etcd.revoke(lease)).await;
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.cfg.instance)
            .field("connected", &self.is_connected())
            .finish()
    }
}

fn read_saved_lease(state_dir: &Path) -> Option<i64> {
    std::fs::read_to_string(state_dir.join("cluster-lease")).ok()?.trim().parse().ok()
}

/// A short SHA-256 of what decides the answers: the steering settings as parsed
/// (regions, services, health checks, GeoIP settings: `settings`, e.g. the `Debug` text of
/// the config's `gslb` part, which holds no hash maps, so it prints the same everywhere),
/// the zone files (by name) and the GeoIP database. Per-instance settings (listen
/// addresses, state directory, the `[cluster]` table itself) are left out on purpose: they
/// differ between members without changing an answer. Unreadable files count as empty.
pub fn config_hash(settings: &str, zones_dir: &Path, geoip: Option<&Path>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut add = |name: &str, bytes: &[u8]| {
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(bytes);
        ctx.update(&[0]);
    };
    add("settings", settings.as_bytes());
    let mut zones: Vec<_> = std::fs::read_dir(zones_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    zones.sort();
    for z in &zones {
        let name = z.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        add(&name, &std::fs::read(z).unwrap_or_default());
    }
    if let Some(g) = geoip {
        add("geoip", &std::fs::read(g).unwrap_or_default());
    }
    ctx.finish().as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Arc<Cluster> {
        let cfg = crate::config::parse(
            "[cluster]\netcd = [\"http://127.0.0.1:1\"]\ninstance = \"a\"\nprefix = \"/t\"\n",
            Path::new("g.toml"),
        )
        .unwrap()
        .cluster
        .unwrap();
        let me = Member {
            instance: "a".into(),
            site: "s".into(),
            address: "x".into(),
            version: "v".into(),
            config_hash: "h".into(),
            ready: false,
        };
        Cluster::new(cfg, me).unwrap()
    }

    #[test]
    fn values_written_by_others_are_ignored_and_counted() {
        let c = cluster();
        assert_eq!(c.decode_override("k", 1, br#"{"weight": 5, "drained": false}"#).unwrap().weight, Some(5));
        let bad = [&b"not json"[..], br#"[1]"#, br#"{"weight": "heavy"}"#, br#"{"weight": 1, "colour": "red"}"#];
        for (revision, bad) in (2..).zip(bad) {
            assert!(c.decode_override("k", revision, bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(c.bad_values(), 4);
        // The same value seen again (a re-list) is not counted again; a new revision is.
        assert!(c.decode_override("k", 5, b"not json").is_none());
        assert_eq!(c.bad_values(), 4);
        assert!(c.decode_override("k", 6, b"not json").is_none());
        assert_eq!(c.bad_values(), 5);
        assert_eq!(c.region_of("/t/overrides/eu"), Some("eu"));
        assert_eq!(c.region_of("/t/overrides/eu/x"), None);
        assert_eq!(c.region_of("/t/members/eu"), None);
    }

    #[test]
    fn config_hash_follows_the_files() {
        let tmp = crate::testutil::TempDir::new("hash");
        tmp.write("zones/a.zone", "1");
        let h1 = config_hash("x", &tmp.path().join("zones"), None);
        assert_eq!(h1.len(), 16);
        assert_eq!(h1, config_hash("x", &tmp.path().join("zones"), None));
        assert_ne!(h1, config_hash("y", &tmp.path().join("zones"), None));
        tmp.write("zones/a.zone", "2");
        assert_ne!(h1, config_hash("x", &tmp.path().join("zones"), None));
    }
}
