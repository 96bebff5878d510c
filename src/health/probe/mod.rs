//! Probes: one attempt against a region's health endpoint, bounded by the check's timeout. A
//! failure is a value ([`FailReason`]) that says what a human needs to know (refused? timed
//! out? which status?), never an error to bubble up or ignore.
//!
//! One file per kind of check, each owning its config table (a serde struct with spans),
//! its validation, and how it builds and runs its probe: [`http`] (`type = "http"` and
//! `"https"`) and [`tcp`]. [`KINDS`] lists them; a new kind is one file implementing
//! [`Check`] with a [`Kind`] entry, plus its line in [`KINDS`]. The config loader reads the
//! keys every check has (`type`, `interval`, `timeout`, `rise`, `fall`, `window`,
//! `window_failures`) and hands the table to the kind its `type` names.

pub mod http;
pub mod tcp;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use toml::Spanned;
use toml::de::DeValue;

use super::check::CheckConfig;

/// Every kind of check, in the order `type` lists them in errors. One line per kind.
pub static KINDS: &[&Kind] = &[&http::KIND, &tcp::KIND];

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Healthy; `rtt` from the start of the attempt to the verdict (connect, request,
    /// status line, and the body when `body_contains` is set).
    Ok {
        /// Round-trip time of the probe.
        rtt: Duration,
    },
    /// Failed, and why.
    Fail(FailReason),
}

impl ProbeOutcome {
    /// True when the probe passed.
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeOutcome::Ok { .. })
    }

    /// How long a passing probe took; None for a failure.
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            ProbeOutcome::Ok { rtt } => Some(*rtt),
            ProbeOutcome::Fail(_) => None,
        }
    }
}

/// Why a probe failed, typed so logs, the admin API and tests agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// No verdict within the check's timeout (including an endpoint that accepts and never
    /// answers).
    Timeout(Duration),
    /// The TCP connection was refused (RST): nothing listens on the port.
    ConnectionRefused,
    /// Any other failure to connect (unreachable, reset during connect ...).
    Connect(String),
    /// The probe target's name did not resolve.
    Resolve(String),
    /// The TLS handshake failed: bad certificate, wrong name, not TLS at all ...
    Tls(String),
    /// An answer whose status is not in `expect_status`.
    Status(u16),
    /// The first [`BODY_LIMIT`] bytes of the body lack `body_contains`.
    BodyMismatch,
    /// The connection broke or the answer was not HTTP.
    Http(String),
    /// The probe could not be set up (e.g. no system root certificates); it fails until
    /// the configuration changes.
    Setup(String),
    /// Cluster mode: the region's verdict from the probers of other instances (how many of
    /// them said down, and the first one's reason).
    Cluster(String),
}

impl FailReason {
    /// A short label for metrics (`gslbd_probe_results_total{result=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Timeout(_) => "timeout",
            FailReason::ConnectionRefused => "refused",
            FailReason::Connect(_) => "connect",
            FailReason::Resolve(_) => "resolve",
            FailReason::Tls(_) => "tls",
            FailReason::Status(_) => "status",
            FailReason::BodyMismatch => "body",
            FailReason::Http(_) => "http",
            FailReason::Setup(_) => "setup",
            FailReason::Cluster(_) => "cluster",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            FailReason::ConnectionRefused => f.write_str("connection refused"),
            FailReason::Connect(e) => write!(f, "cannot connect: {e}"),
            FailReason::Resolve(e) => write!(f, "cannot resolve: {e}"),
            FailReason::Tls(e) => write!(f, "tls error: {e}"),
            FailReason::Status(s) => write!(f, "status {s}"),
            FailReason::BodyMismatch => f.write_str("body mismatch"),
            FailReason::Http(e) => write!(f, "http error: {e}"),
            FailReason::Setup(e) => write!(f, "probe setup failed: {e}"),
            FailReason::Cluster(e) => write!(f, "cluster: {e}"),
        }
    }
}

/// A probe attempt: resolves to pass or a reason.
pub type Attempt = Pin<Box<dyn Future<Output = Result<(), FailReason>> + Send>>;
/// Makes one attempt each call. Built once per check (HTTP clients, TLS settings) by
/// [`Check::build`], or by hand for tests of everything around probes.
pub type ScriptFn = Arc<dyn Fn() -> Attempt + Send + Sync>;

/// `gslbd/<version>`: lets balancer logs tell our probes from clients.
pub const USER_AGENT: &str = concat!("gslbd/", env!("CARGO_PKG_VERSION"));

/// A validated check of one kind: what the prober compares across reloads (equal checks
/// keep their state) and builds its probe from.
///
/// `Debug` is part of the contract: [`crate::health::RegionChecks::fingerprint`] digests it
/// to decide whether a saved verdict belongs to the same checks.
pub trait Check: DynEq + fmt::Debug + Send + Sync {
    /// Builds the attempt function once; Err when the probe cannot be set up at all (e.g.
    /// no system root certificates): it then fails every attempt with
    /// [`FailReason::Setup`] until the configuration changes.
    fn build(&self) -> Result<ScriptFn, String>;

    /// The `type` of this check, as configured (`http`, `https`, `tcp`).
    fn type_name(&self) -> &'static str;
}

/// Equality across `dyn Check` values: the same kind with equal settings.
pub trait DynEq: Any {
    /// The value as [`Any`], for downcasting to the concrete check type.
    fn as_any(&self) -> &dyn Any;
    /// True when `other` is the same check type with equal settings.
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: PartialEq + Any> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl dyn Check {
    /// The check as its kind's type, if it is of that kind.
    pub fn downcast_ref<T: Check>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }
}

impl PartialEq for dyn Check {
    fn eq(&self, other: &dyn Check) -> bool {
        self.dyn_eq(other.as_any())
    }
}

/// One kind of check, as the config loader sees it.
pub struct Kind {
    /// The `type = "..."` values it takes.
    pub types: &'static [&'static str],
    /// The keys of its table beside the common ones ([`COMMON_KEYS`]).
    pub keys: &'static [&'static str],
    /// Validates a table whose `type` is one of `types`: the check, or None after
    /// reporting every problem.
    pub parse: fn(&Table<'_, '_>, &mut Report<'_>) -> Option<Arc<dyn Check>>,
    /// How it words a key that belongs to another kind, found in its table:
    /// (`message` after `field.key: `, hint).
    pub foreign_key: fn(type_name: &str, key: &str) -> (String, String),
}

/// Keys every check takes, read by the config loader.
pub const COMMON_KEYS: [&str; 7] = ["type", "interval", "timeout", "rise", "fall", "window", "window_failures"];

/// Reports a problem at a byte range of the config file: message, hint.
pub type Report<'a> = dyn FnMut(Range<usize>, String, Option<&str>) + 'a;

/// One check table handed to its kind.
pub struct Table<'a, 'i> {
    /// The `type` value, one of the kind's `types`.
    pub type_name: &'a str,
    /// Where `type` is written (errors about the check as a whole point there).
    pub type_span: Range<usize>,
    /// The check's path in errors: `regions.fra.check`, `regions.fra.checks[1]`.
    pub field: &'a str,
    /// The config file's directory: relative paths (`tls_ca_file`) are relative to it.
    pub base: &'a Path,
    /// The table itself, with the spans of every key and value.
    pub value: &'a Spanned<DeValue<'i>>,
}

impl Table<'_, '_> {
    /// `field.key`, as errors name a key.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// The table as the kind's raw struct (unknown keys are the loader's business).
    pub fn deserialize<T: DeserializeOwned>(&self, report: &mut Report<'_>) -> Option<T> {
        deserialize(self.value, report)
    }
}

/// A TOML value (with its spans) as `T`; a value of the wrong type is reported at the value.
pub fn deserialize<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>, report: &mut Report<'_>) -> Option<T> {
    T::deserialize(toml::de::ValueDeserializer::from(value.clone()))
        .map_err(|e| report(e.span().unwrap_or(value.span()), e.message().trim().to_string(), None))
        .ok()
}

/// The kind that takes `type = type_name`.
pub fn kind(type_name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.types.contains(&type_name))
}

/// `"http", "https" or "tcp"`: every `type` value, for hints.
pub fn type_list() -> String {
    let all: Vec<String> = KINDS.iter().flat_map(|k| k.types).map(|t| format!("{t:?}")).collect();
    match all.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A ready-to-run probe built from one check: HTTP clients and TLS settings are built once
/// and reused for every attempt.
#[derive(Clone)]
pub struct Probe {
    timeout: Duration,
    /// What it probes, for Debug.
    what: String,
    attempt: ScriptFn,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe").field("kind", &self.what).field("timeout", &self.timeout).finish()
    }
}

impl Probe {
    /// Builds the probe for a check. A probe that cannot be built (no system roots, a
    /// client that does not build) fails every attempt with [`FailReason::Setup`].
    pub fn build(check: &CheckConfig) -> Probe {
        let what = format!("{:?}", check.kind);
        let attempt = check.kind.build().unwrap_or_else(|e| {
            let reason = FailReason::Setup(e);
            Arc::new(move || -> Attempt {
                let reason = reason.clone();
                Box::pin(async move { Err(reason) })
            })
        });
        Probe { timeout: check.timeout, what, attempt }
    }

    /// A probe whose attempts are made by `script`, still bounded by `timeout`.
    pub fn scripted(timeout: Duration, script: ScriptFn) -> Probe {
        Probe { timeout, what: "script".into(), attempt: script }
    }

    /// One attempt, never longer than the timeout (a hung endpoint is a timeout).
    pub async fn run(&self) -> ProbeOutcome {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, (self.attempt)()).await {
            Ok(Ok(())) => ProbeOutcome::Ok { rtt: start.elapsed() },
            Ok(Err(r)) => ProbeOutcome::Fail(r),
            Err(_) => ProbeOutcome::Fail(FailReason::Timeout(self.timeout)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::TcpListener;

    use super::*;

    pub const TIMEOUT: Duration = Duration::from_millis(300);

    /// One attempt of `check` with a 300 ms timeout.
    pub async fn run(check: Arc<dyn Check>) -> ProbeOutcome {
        let check = CheckConfig {
            kind: check,
            interval: Duration::from_secs(1),
            timeout: TIMEOUT,
            rise: 1,
            fall: 1,
            window: None,
        };
        Probe::build(&check).run().await
    }

    /// A plain GET check of `url` with the defaults.
    fn http_check(url: &str) -> Arc<dyn Check> {
        Arc::new(http::Http(http::tests::http(url)))
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_fast() {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let start = std::time::Instant::now();
        assert_eq!(
            run(Arc::new(tcp::Tcp { address: addr.to_string() })).await,
            ProbeOutcome::Fail(FailReason::ConnectionRefused)
        );
        assert_eq!(
            run(http_check(&format!("http://{addr}/"))).await,
            ProbeOutcome::Fail(FailReason::ConnectionRefused)
        );
        assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
        assert_eq!(FailReason::ConnectionRefused.to_string(), "connection refused");
    }

    #[test]
    fn checks_are_equal_only_to_the_same_kind_with_the_same_settings() {
        let a: Arc<dyn Check> = Arc::new(tcp::Tcp { address: "a:1".into() });
        assert!(*a == *(Arc::new(tcp::Tcp { address: "a:1".into() }) as Arc<dyn Check>));
        assert!(*a != *(Arc::new(tcp::Tcp { address: "a:2".into() }) as Arc<dyn Check>));
        assert!(*a != *http_check("http://a:1/"));
        assert_eq!(type_list(), "\"http\", \"https\" or \"tcp\"");
    }
}
