//! The admin HTTP API (axum): state, overrides, explain, reload, metrics, liveness.
//!
//! Reads are open unless `read_requires_token`; every change needs a bearer token. Tokens
//! are compared in constant time and never logged (the audit log names the token's id).
//! Bad input gets a 4xx JSON error naming the field and changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::control::{Control, OverrideError};
use crate::gslb::status::Mode;
use crate::health::Verdict;
use crate::metrics;
use crate::overrides::Force;

/// Largest request body accepted.
const BODY_LIMIT: usize = 4096;

/// A bearer token and the id the audit log names it by.
#[derive(Clone)]
pub struct Token {
    /// The token's id, as the audit log and events name it: the part before `:` in the token
    /// file, else `file-N` (its N-th token), or `env` for the environment variable's token.
    pub id: String,
    secret: Vec<u8>,
}

/// Why the admin API's tokens could not be set up; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file at `path` could not be read; `source` is the I/O error.
    #[error("{}: cannot read admin tokens: {source}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Unreadable { path: std::path::PathBuf, source: std::io::Error },
    /// The API would listen on this non-loopback address with no token at all; the string is
    /// the token environment variable's name (for the hint).
    #[error(
        "admin API on {0} (not loopback) without a token\n  hint: set [admin] token_file, or the {1} environment variable, or listen on 127.0.0.1"
    )]
    Unprotected(SocketAddr, String),
}

/// Reads tokens: each non-empty line of the token file (`id:secret` or `secret`), and the
/// environment variable. A non-loopback listener without any token is refused.
pub fn load_tokens(cfg: &crate::config::Admin, listen: SocketAddr) -> Result<Vec<Token>, TokenError> {
    let mut tokens = Vec::new();
    if let Some(path) = &cfg.token_file {
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable { path: path.clone(), source })?;
        for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).enumerate() {
            let (id, secret) = line.split_once(':').unwrap_or(("", line));
            let id = if id.is_empty() { format!("file-{}", i + 1) } else { id.to_string() };
            tokens.push(Token { id, secret: secret.as_bytes().to_vec() });
        }
    }
    if let Ok(v) = std::env::var(&cfg.token_env)
        && !v.is_empty()
    {
        tokens.push(Token { id: "env".into(), secret: v.into_bytes() });
    }
    if tokens.is_empty() && !listen.ip().is_loopback() {
        return Err(TokenError::Unprotected(listen, cfg.token_env.clone()));
    }
    Ok(tokens)
}

/// Equal in constant time for equal lengths (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone)]
struct Api {
    control: Arc<Control>,
    /// Samples of the answer counters for the status page's recent shares.
    shares: Arc<std::sync::Mutex<crate::page::ShareWindow>>,
    /// Samples of the answer counters over [`SKEW_WINDOW`], for the skew figures.
    skew: Arc<std::sync::Mutex<crate::page::ShareWindow>>,
    drain_max_utilisation: f64,
    tokens: Arc<Vec<Token>>,
    read_requires_token: bool,
    request_timeout: Duration,
}

/// Who made a request, for the audit log.
#[derive(Clone)]
struct Caller {
    client: String,
    token: String,
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message.into() });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

/// Checks the bearer token: always for changes, for reads when configured.
async fn auth(
    State(api): State<Api>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let is_read = req.method() == axum::http::Method::GET;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().as_bytes().to_vec());
    let matched = presented.as_deref().and_then(|p| api.tokens.iter().find(|t| constant_time_eq(&t.secret, p)));
    let needs_token = !is_read || api.read_requires_token;
    if needs_token && matched.is_none() {
        let msg = if api.tokens.is_empty() {
            "no admin token is configured, so changes are refused; set [admin] token_file"
        } else if presented.is_some() {
            "invalid bearer token"
        } else {
            "missing bearer token (Authorization: Bearer TOKEN)"
        };
        return error(StatusCode::UNAUTHORIZED, msg, Some("authorization"));
    }
    req.extensions_mut()
        .insert(Caller { client: peer.to_string(), token: matched.map_or_else(|| "-".into(), |t| t.id.clone()) });
    next.run(req).await
}

/// Rejections made by axum itself (a body over [`BODY_LIMIT`], a wrong content type) come as
/// plain text; the API promises a JSON error for every 4xx, so they are turned into one.
async fn json_rejections(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => {
            error(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {BODY_LIMIT} bytes"), Some("body"))
        }
        status if status.is_client_error() && !is_json => {
            let text = axum::body::to_bytes(resp.into_body(), BODY_LIMIT).await.unwrap_or_default();
            error(status, String::from_utf8_lossy(&text).trim().to_string(), None)
        }
        _ => resp,
    }
}

async fn timeout(State(api): State<Api>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(api.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(StatusCode::REQUEST_TIMEOUT, "request took too long", None),
    }
}

/// The admin API's routes: the status page, `/v1/...` and `/metrics` behind the bearer
/// tokens (GETs only when `read_requires_token`), and the unauthenticated `/healthz` and
/// `/readyz`. Every request is cut off after `cfg.request_timeout`.
pub fn router(control: Arc<Control>, tokens: Vec<Token>, cfg: &crate::config::Admin) -> Router {
    let api = Api {
        control,
        shares: Arc::new(std::sync::Mutex::new(crate::page::ShareWindow::new(
            crate::page::SHARE_WINDOW,
            std::time::Duration::from_secs(5),
        ))),
        skew: Arc::new(std::sync::Mutex::new(crate::page::ShareWindow::new(SKEW_WINDOW, Duration::from_secs(1)))),
        drain_max_utilisation: cfg.drain_max_utilisation,
        tokens: Arc::new(tokens),
        read_requires_token: cfg.read_requires_token,
        request_timeout: cfg.request_timeout,
    };
    Router::new()
        .route("/", get(page))
        .route("/v1/status", get(status))
        .route("/v1/regions/{name}/weight", put(set_weight))
        .route("/v1/regions/{name}/drain", post(drain))
        .route("/v1/regions/{name}/undrain", post(undrain))
        .route("/v1/regions/{name}/force", post(force))
        .route("/v1/explain", get(explain))
        .route("/v1/reload", post(reload))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(api.clone(), auth))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see README.md, section Admin API", None) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(json_rejections))
        .layer(middleware::from_fn_with_state(api.clone(), timeout))
        .with_state(api)
}

/// Serves the API until `shutdown` turns true. A connection must be answered within `idle`
/// (`[admin] request_timeout`) of being accepted or of its previous answer; only answers
/// count as progress, so a client that sends nothing, or trickles its headers a byte at a
/// time, is cut off as surely as an idle keep-alive connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    idle: Duration,
    mut shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<()> {
    let listener = TimedListener { inner: listener, idle };
    axum::serve(listener, router.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await
}

/// The client's address, as handlers see it.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TimedListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TimedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP listener whose connections time out when idle.
pub struct TimedListener {
    inner: tokio::net::TcpListener,
    idle: Duration,
}

impl axum::serve::Listener for TimedListener {
    type Io = TimedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TimedIo, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (TimedIo { io, idle: self.idle, deadline: Box::pin(tokio::time::sleep(self.idle)) }, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails with `TimedOut` when no answer has been written for `idle`.
pub struct TimedIo {
    io: tokio::net::TcpStream,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl TimedIo {
    fn progress(&mut self) {
        self.deadline.as_mut().reset(tokio::time::Instant::now() + self.idle);
    }

    fn stalled(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "admin API client idle too long")
}

impl tokio::io::AsyncRead for TimedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.stalled(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TimedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.io).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.progress();
                Poll::Ready(r)
            }
            Poll::Pending if this.stalled(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn status(State(api): State<Api>) -> Response {
    Json(status_value(&api)).into_response()
}

/// The status page (`GET /`), rendered from the same JSON as `/v1/status`.
async fn page(State(api): State<Api>) -> Response {
    let status = status_value(&api);
    let snap = api.control.state.load_full();
    let mut totals = Vec::new();
    for (i, s) in snap.gslb.services.iter().enumerate() {
        for (pos, &r) in s.regions.iter().enumerate() {
            let region = snap.gslb.regions[r as usize].name.clone();
            totals.push((s.name.to_string(), region, snap.answer_counts.total(i, pos)));
        }
    }
    let shares = api.shares.lock().unwrap_or_else(|p| p.into_inner()).update(std::time::Instant::now(), &totals);
    let changes: Vec<crate::page::Change> = crate::events::recent()
        .into_iter()
        .map(|e| crate::page::Change {
            at: e.at,
            kind: e.change.kind(),
            subject: e.change.subject().to_string(),
            what: e.change.describe(),
        })
        .collect();
    let html = crate::page::render(&status, &shares, &changes, crate::overrides::now());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

/// The span over which actual shares of answers are compared with intended ones: about two
/// TTLs of a typical service, so a change of plan shows within a minute.
pub const SKEW_WINDOW: Duration = Duration::from_secs(60);

/// One service's intended and actual shares of answers, by region, and its skew.
#[derive(Debug, Clone)]
struct ServiceSkew {
    service: String,
    /// (region, intended share, actual share over [`SKEW_WINDOW`]; None without answers).
    rows: Vec<(String, f64, Option<f64>)>,
    skew: Option<f64>,
}

/// Every service's shares and skew now (samples the answer counters).
fn skews(api: &Api, snap: &crate::snapshot::Snapshot) -> Vec<ServiceSkew> {
    let mut totals = Vec::new();
    for (i, s) in snap.gslb.services.iter().enumerate() {
        for (pos, &r) in s.regions.iter().enumerate() {
            let region = snap.gslb.regions[r as usize].name.clone();
            totals.push((s.name.to_string(), region, snap.answer_counts.total(i, pos)));
        }
    }
    let recent = api.skew.lock().unwrap_or_else(|p| p.into_inner()).update(std::time::Instant::now(), &totals);
    snap.gslb
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = s.name.to_string();
            let intended = crate::gslb::shares::intended(&snap.gslb, &snap.status, i);
            let counts = recent.get(&name).cloned().unwrap_or_default();
            let sum: u64 = counts.iter().map(|c| c.1).sum();
            let rows: Vec<(String, f64, Option<f64>)> = s
                .regions
                .iter()
                .map(|&r| {
                    let region = snap.gslb.regions[r as usize].name.clone();
                    let want = intended.iter().find(|x| x.0 == r).map_or(0.0, |x| x.1);
                    let got = counts.iter().find(|c| c.0 == region).map(|c| c.1);
                    let actual = (sum > 0).then(|| got.unwrap_or(0) as f64 / sum as f64);
                    (region, want, actual)
                })
                .collect();
            let pairs: Vec<(f64, f64)> = rows.iter().filter_map(|(_, w, a)| Some((*w, (*a)?))).collect();
            ServiceSkew { service: name, skew: crate::gslb::shares::skew(&pairs), rows }
        })
        .collect()
}

/// A region's load for `/v1/status`: source, utilisation (null when unknown), raw reading,
/// age of the last good reading, why the last attempt failed.
fn load_value(load: Option<&crate::load::RegionLoad>, now: std::time::SystemTime) -> Value {
    match load {
        None => Value::Null,
        Some(l) => json!({
            "source": l.source,
            "utilisation": l.utilisation,
            "raw": l.raw,
            "age_seconds": l.age(now),
            "failure": l.failure.as_ref().map(|f| f.to_string()),
        }),
    }
}

/// What `/v1/status` answers: zones, services, regions now.
fn status_value(api: &Api) -> Value {
    let snap = api.control.state.load_full();
    let health = api.control.health();
    let overrides = api.control.overrides();
    let load = api.control.load();
    let now = std::time::SystemTime::now();
    let skews = skews(api, &snap);
    let names = |ids: &[u16]| ids.iter().map(|&r| snap.gslb.regions[r as usize].name.clone()).collect::<Vec<_>>();
    let services: Vec<Value> = snap
        .gslb
        .services
        .iter()
        .zip(&snap.status.services)
        .zip(&skews)
        .map(|((s, st), sk)| {
            json!({
                "name": s.name.to_string(),
                "policy": s.chain.names(),
                "regions": names(&s.regions),
                "mode": st.mode.as_str(),
                "healthy_regions": st.healthy,
                "ttl": st.ttl,
                "answer_set": { "A": names(&st.candidates_a), "AAAA": names(&st.candidates_aaaa) },
                "latency_choice": st.rechosen.map(|r| snap.gslb.regions[r as usize].name.clone()),
                "skew": sk.skew,
                "shares": sk.rows.iter().map(|(r, want, got)| json!({ "region": r, "intended": want, "actual": got })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let regions: Vec<Value> = snap
        .gslb
        .regions
        .iter()
        .zip(&snap.status.regions)
        .map(|(r, st)| {
            let h = health.region(&r.name);
            let o = overrides.regions.get(&r.name);
            json!({
                "name": r.name,
                "coordinates": r.coordinates.map(|(lat, lon)| [lat, lon]),
                "up": st.is_up,
                "health": h.map_or("unchecked", |h| h.state.as_str()),
                "since": h.map(|h| secs(h.since)),
                "reason": h.and_then(|h| h.reason.as_ref()).map(|r| r.to_string()),
                "rtt_ewma_ms": h.and_then(|h| h.rtt_ewma_ms),
                "recent_probes": h.map(|h| h.recent.iter().map(|p| json!({
                    "at": secs(p.at),
                    "check": p.check,
                    "ok": p.outcome.is_ok(),
                    "rtt_ms": p.rtt().map(|d| d.as_secs_f64() * 1000.0),
                    "reason": match &p.outcome { crate::health::ProbeOutcome::Fail(f) => Some(f.to_string()), _ => None },
                })).collect::<Vec<_>>()),
                "weight": { "configured": r.weight, "effective": st.weight },
                "capacity": r.capacity,
                "utilisation": st.utilisation,
                "load_age_seconds": load.regions.get(&r.name).and_then(|l| l.age(now)),
                "load": load_value(load.regions.get(&r.name), now),
                "override": o,
            })
        })
        .collect();
    let mut v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": api.control.uptime().as_secs(),
        "zones": snap.zones.iter().map(|z| json!({"name": z.apex().to_string(), "records": z.record_count(), "file": z.source().display().to_string()})).collect::<Vec<_>>(),
        "services": services,
        "regions": regions,
    });
    if let Some(c) = api.control.cluster() {
        v["cluster"] = cluster_value(c);
        let view = api.control.cluster_view();
        v["cluster"]["standalone"] = json!(view.standalone);
        v["cluster"]["regions"] = json!(view.regions);
        v["cluster"]["verdict_rtt"] = json!("median of the fresh observers' smoothed RTTs");
    }
    v
}

/// `/v1/status` `cluster`: this member, the connection to etcd (and since when), the live
/// members and which of them run a different config, zones or GeoIP database.
fn cluster_value(c: &crate::cluster::Cluster) -> Value {
    let (connected, since) = c.connection();
    json!({
        "instance": c.instance(),
        "site": c.me().site,
        "config_hash": c.me().config_hash,
        "connected": connected,
        "since": secs(since),
        "members": c.members(),
        "differing_config": c.differing_members(),
        "ignored_values": c.bad_values(),
    })
}

fn override_result(r: Result<crate::overrides::RegionOverride, OverrideError>) -> Response {
    match r {
        Ok(o) => Json(json!({ "ok": true, "override": o })).into_response(),
        Err(OverrideError::UnknownRegion(name)) => {
            error(StatusCode::NOT_FOUND, format!("unknown region {name:?}"), Some("name"))
        }
        Err(e @ OverrideError::NotSaved(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
        Err(
            e @ (OverrideError::ClusterUnreachable(_)
            | OverrideError::ClusterUnconfirmed(_)
            | OverrideError::ClusterRefused(_)),
        ) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None),
        Err(OverrideError::WouldHurt(services)) => {
            let message = OverrideError::WouldHurt(services.clone()).to_string();
            (StatusCode::CONFLICT, Json(json!({ "error": message, "field": "force", "services": services })))
                .into_response()
        }
    }
}

/// `PUT /v1/regions/{name}/weight`. Values are checked by the handler, so a bad one is a 400
/// that names the field and says what is accepted.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightRequest {
    weight: Value,
    /// Cluster mode: make the change even if it leaves a service below min_healthy.
    #[serde(default)]
    force: bool,
}

/// The standalone bodies, as before cluster mode: `force` is no field of theirs, so
/// without `[cluster]` the API answers exactly as it did (400 for an unknown `force`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed only to give the standalone answer to a bad body
struct StandaloneWeight {
    weight: Value,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed only to give the standalone answer to a bad body
struct StandaloneForce {
    state: Option<Value>,
    #[serde(default)]
    ttl_seconds: Option<Value>,
}

/// Parses a body as `T`, after checking it as `S` (its standalone shape) when not in
/// cluster mode.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
fn body_for<S: serde::de::DeserializeOwned, T: serde::de::DeserializeOwned>(
    api: &Api,
    bytes: &[u8],
) -> Result<T, Response> {
    if api.control.cluster().is_none() {
        self::body::<S>(bytes)?;
    }
    self::body(bytes)
}

/// The optional body of `drain` and `undrain`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    #[serde(default)]
    force: bool,
}

/// `POST /v1/regions/{name}/force`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceRequest {
    state: Option<Value>,
    #[serde(default)]
    ttl_seconds: Option<Value>,
    /// Cluster mode: make the change even if it leaves a service below min_healthy.
    #[serde(default)]
    force: bool,
}

/// Parses a JSON request body into `T`: not JSON, not an object, a missing field or one `T`
/// does not have (`deny_unknown_fields`) is a 400 naming the field where there is one.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
fn body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("body is not valid JSON: {e}"), None))?;
    if !v.is_object() {
        return Err(error(StatusCode::BAD_REQUEST, "body must be a JSON object", None));
    }
    serde_json::from_value(v).map_err(|e| {
        // serde words these "unknown field `x`, expected ..." and "missing field `x`".
        let message = e.to_string();
        let field = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        error(StatusCode::BAD_REQUEST, message.replace('`', "\""), field)
    })
}

async fn set_weight(
    State(api): State<Api>,
    Path(name): Path<String>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let req: WeightRequest = match body_for::<StandaloneWeight, _>(&api, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let weight = match req.weight.as_u64() {
        Some(w) if w <= crate::config::gslb::MAX_WEIGHT as u64 => w as u32,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("weight must be an integer from 0 to {}, got {}", crate::config::gslb::MAX_WEIGHT, req.weight),
                Some("weight"),
            );
        }
    };
    override_result(
        api.control
            .set_override(&name, &caller.client, &caller.token, "weight", req.force, |o| o.weight = Some(weight))
            .await,
    )
}

/// The optional `{"force": true}` body of drain and undrain; no body is `force: false`.
/// `force` drains although the projection says a region would be overloaded, and in
/// cluster mode overrides the min_healthy guard rail.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
fn drain_body(bytes: &[u8]) -> Result<DrainRequest, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(DrainRequest::default()) } else { self::body(bytes) }
}

#[derive(serde::Deserialize)]
struct DrainQuery {
    dry_run: Option<bool>,
}

/// Drains a region, unless its clients would push a remaining region over
/// `admin.drain_max_utilisation` (409 with the projections; `"force": true` drains anyway),
/// or in cluster mode it would leave a service below min_healthy (409 from the guard rail).
/// `?dry_run=true` only reports the projections and the services below min_healthy.
async fn drain(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<DrainQuery>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let req = match drain_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let snap = api.control.state.load_full();
    let Some(id) = snap.gslb.region_id(&name) else {
        return error(StatusCode::NOT_FOUND, format!("unknown region {name:?}"), Some("name"));
    };
    let max = api.drain_max_utilisation;
    let projections = crate::gslb::shares::drain_projection(&snap.gslb, &snap.status, id);
    let overloaded: Vec<String> = projections
        .iter()
        .filter(|p| p.projected.is_some_and(|u| u > max))
        .map(|p| snap.gslb.regions[p.region as usize].name.clone())
        .collect();
    // Cluster mode's guard rail, which the drain itself meets in set_override: named here
    // so that a dry run tells of both refusals, and a forced drain is audited as such.
    let below = api.control.would_hurt(&name, |o| o.drained = true);
    let report = json!({
        "region": name,
        "utilisation": snap.status.regions.get(id as usize).and_then(|s| s.utilisation),
        "max_utilisation": max,
        "remaining": projections.iter().map(|p| json!({
            "region": snap.gslb.regions[p.region as usize].name,
            "utilisation": p.utilisation,
            "projected_utilisation": p.projected,
        })).collect::<Vec<_>>(),
        "overloaded": overloaded,
        "below_min_healthy": below,
    });
    if q.dry_run == Some(true) {
        return Json(json!({ "ok": true, "dry_run": true, "projection": report })).into_response();
    }
    if !overloaded.is_empty() && !req.force {
        let message = format!(
            "draining {name} would push {} over utilisation {max}; send {{\"force\": true}} to drain anyway",
            overloaded.join(", ")
        );
        return (StatusCode::CONFLICT, Json(json!({ "error": message, "projection": report }))).into_response();
    }
    // Without force, a drain past the guard rail is refused below; with it, one that needed
    // it (either limit) is audited as forced.
    let action = if overloaded.is_empty() && below.is_empty() { "drain" } else { "drain-forced" };
    override_result(
        api.control.set_override(&name, &caller.client, &caller.token, action, req.force, |o| o.drained = true).await,
    )
}

async fn undrain(
    State(api): State<Api>,
    Path(name): Path<String>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let req = match drain_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    override_result(
        api.control
            .set_override(&name, &caller.client, &caller.token, "undrain", req.force, |o| o.drained = false)
            .await,
    )
}

async fn force(
    State(api): State<Api>,
    Path(name): Path<String>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let req: ForceRequest = match body_for::<StandaloneForce, _>(&api, &body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let up = match req.state.as_ref().and_then(Value::as_str) {
        Some("up") => Some(true),
        Some("down") => Some(false),
        Some("auto") => None,
        _ => return error(StatusCode::BAD_REQUEST, "state must be \"up\", \"down\" or \"auto\"", Some("state")),
    };
    let ttl = match &req.ttl_seconds {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(t) if (1..=31_536_000).contains(&t) => Some(t),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("ttl_seconds must be an integer from 1 to 31536000, got {v}"),
                    Some("ttl_seconds"),
                );
            }
        },
    };
    if up.is_none() && ttl.is_some() {
        return error(StatusCode::BAD_REQUEST, "ttl_seconds goes with state \"up\" or \"down\"", Some("ttl_seconds"));
    }
    let now = crate::overrides::now();
    let action = match up {
        Some(true) => "force-up",
        Some(false) => "force-down",
        None => "force-auto",
    };
    override_result(
        api.control
            .set_override(&name, &caller.client, &caller.token, action, req.force, |o| {
                o.force = up.map(|up| Force { up, until: ttl.map(|t| now + t) })
            })
            .await,
    )
}

/// docs/openapi.yaml, compiled in and turned into JSON once.
static OPENAPI: std::sync::LazyLock<Result<Value, String>> = std::sync::LazyLock::new(|| {
    serde_norway::from_str(include_str!("../docs/openapi.yaml")).map_err(|e| format!("docs/openapi.yaml: {e}"))
});

async fn openapi() -> Response {
    match &*OPENAPI {
        Ok(v) => Json(v.clone()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.clone(), None),
    }
}

async fn reload(State(api): State<Api>) -> Response {
    match api.control.reload().await {
        Ok(restart_needed) => Json(json!({ "ok": true, "restart_needed": restart_needed })).into_response(),
        Err(errors) => {
            // One object per error; line and column are null when the error is about a whole
            // file (unreadable, no zones).
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| {
                    json!({
                        "file": e.location.file.display().to_string(),
                        "line": e.location.line,
                        "column": e.location.column,
                        "message": e.message(),
                        "hint": e.hint(),
                    })
                })
                .collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "ok": false, "error": "invalid configuration or zones; nothing changed", "errors": errors })),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(api): State<Api>) -> Response {
    let snap = api.control.state.load_full();
    let skews = skews(&api, &snap);
    let state = SnapshotCollector {
        snap,
        health: api.control.health(),
        load: api.control.load(),
        skews,
        cluster: api.control.cluster().cloned(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render(state)).into_response()
}

/// The series that describe the serving snapshot — regions, services and the answers they
/// gave — computed from it at each scrape: what a reload deleted is not exported at all.
#[derive(Debug)]
struct SnapshotCollector {
    snap: Arc<crate::snapshot::Snapshot>,
    health: Arc<crate::health::HealthTable>,
    load: Arc<crate::load::LoadTable>,
    skews: Vec<ServiceSkew>,
    /// Cluster mode only: its series are absent without `[cluster]`.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl SnapshotCollector {
    /// Answers naming the `pos`-th region of service `service` so far. (Where the counters
    /// live is this function's business alone.)
    fn answers(&self, service: usize, pos: usize) -> u64 {
        self.snap.answer_counts.total(service, pos)
    }
}

impl prometheus_client::collector::Collector for SnapshotCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        let (snap, health) = (&self.snap, &self.health);
        let regions = || snap.gslb.regions.iter().zip(&snap.status.regions);
        let mut m = encoder.encode_descriptor(
            "region_up",
            "1 if answers may name the region (health and overrides)",
            None,
            Gauge,
        )?;
        for (r, st) in regions() {
            m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&i64::from(st.is_up))?;
        }
        let mut m = encoder.encode_descriptor("region_weight", "Effective weight of the region", None, Gauge)?;
        for (r, st) in regions() {
            m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&i64::from(st.weight))?;
        }
        let mut m = encoder.encode_descriptor(
            "region_healthy",
            "Probe verdict: 1 healthy, 0 unhealthy, -1 unknown or unchecked",
            None,
            Gauge,
        )?;
        for (r, _) in regions() {
            let v: i64 = match health.region(&r.name).map(|h| h.state) {
                Some(Verdict::Healthy) => 1,
                Some(Verdict::Unhealthy) => 0,
                _ => -1,
            };
            m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&v)?;
        }
        let mut m =
            encoder.encode_descriptor("region_rtt_ewma_seconds", "Smoothed probe RTT of the region", None, Gauge)?;
        for (r, _) in regions() {
            if let Some(rtt) = health.region(&r.name).and_then(|h| h.rtt_ewma_ms) {
                m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&(rtt / 1000.0))?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "region_utilisation",
            "How full the region's balancer says it is (smoothed; 1 = at capacity); absent when unknown",
            None,
            Gauge,
        )?;
        for (r, st) in regions() {
            if let Some(u) = st.utilisation {
                m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&u)?;
            }
        }
        let now = std::time::SystemTime::now();
        let mut m = encoder.encode_descriptor(
            "region_load_reading_age_seconds",
            "Seconds since the region's last good load reading",
            None,
            Gauge,
        )?;
        for (r, _) in regions() {
            if let Some(age) = self.load.regions.get(&r.name).and_then(|l| l.age(now)) {
                m.encode_family(&[("region", r.name.as_str())])?.encode_gauge(&age)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "service_share_intended",
            "Share of the service's answers the region is meant to get (weights and load)",
            None,
            Gauge,
        )?;
        for sk in &self.skews {
            for (region, want, _) in &sk.rows {
                m.encode_family(&[("service", sk.service.as_str()), ("region", region.as_str())])?
                    .encode_gauge(want)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "service_share_actual",
            "Share of the service's answers the region got over the last minute",
            None,
            Gauge,
        )?;
        for sk in &self.skews {
            for (region, _, got) in &sk.rows {
                if let Some(got) = got {
                    m.encode_family(&[("service", sk.service.as_str()), ("region", region.as_str())])?
                        .encode_gauge(got)?;
                }
            }
        }
        let mut m = encoder.encode_descriptor(
            "service_skew",
            "Largest actual/intended share ratio among the service's regions (1 = as planned)",
            None,
            Gauge,
        )?;
        for sk in &self.skews {
            if let Some(v) = sk.skew {
                m.encode_family(&[("service", sk.service.as_str())])?.encode_gauge(&v)?;
            }
        }
        let names: Vec<String> = snap.gslb.services.iter().map(|s| s.name.to_string()).collect();
        let mut m = encoder.encode_descriptor("service_mode", "1 for the service's current mode", None, Gauge)?;
        for (name, st) in names.iter().zip(&snap.status.services) {
            for mode in [Mode::Normal, Mode::Degraded, Mode::FailOpen, Mode::AllDown] {
                let labels = [("service", name.as_str()), ("mode", mode.as_str())];
                m.encode_family(&labels)?.encode_gauge(&i64::from(st.mode == mode))?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "answers",
            "Answers naming a region, by service and region: the distribution clients see",
            None,
            Counter,
        )?;
        for (i, (s, name)) in snap.gslb.services.iter().zip(&names).enumerate() {
            for (pos, &r) in s.regions.iter().enumerate() {
                let labels = [("service", name.as_str()), ("region", snap.gslb.regions[usize::from(r)].name.as_str())];
                metrics::encode_counter(&mut m.encode_family(&labels)?, self.answers(i, pos))?;
            }
        }
        if let Some(c) = &self.cluster {
            let mut m = encoder.encode_descriptor("cluster_connected", "1 while etcd is reachable", None, Gauge)?;
            m.encode_gauge(&i64::from(c.is_connected()))?;
            let mut m =
                encoder.encode_descriptor("cluster_members", "Live cluster members, this one included", None, Gauge)?;
            m.encode_gauge(&(c.members().len() as i64))?;
            let mut m = encoder.encode_descriptor(
                "cluster_config_differing_members",
                "Live members whose config, zones or GeoIP database differ from this one's",
                None,
                Gauge,
            )?;
            m.encode_gauge(&(c.differing_members().len() as i64))?;
            let mut m = encoder.encode_descriptor(
                "cluster_ignored_values",
                "Values in etcd ignored as not written by gslbd (bad JSON, unknown keys, wrong types)",
                None,
                Counter,
            )?;
            metrics::encode_counter(&mut m, c.bad_values())?;
        }
        Ok(())
    }
}

async fn readyz(State(api): State<Api>) -> Response {
    if api.control.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n").into_response()
    }
}

#[derive(serde::Deserialize)]
struct ExplainQuery {
    name: Option<String>,
    #[serde(rename = "type")]
    qtype: Option<String>,
    client: Option<String>,
    ecs: Option<String>,
}

/// The answer gslbd would give this client now, and why.
async fn explain(State(api): State<Api>, Query(q): Query<ExplainQuery>, headers: HeaderMap) -> Response {
    let _ = headers;
    let Some(name) = q.name.filter(|n| !n.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "missing parameter name", Some("name"));
    };
    let fqdn = if name.ends_with('.') { name.clone() } else { format!("{name}.") };
    let qname = match crate::name::Name::parse(&fqdn, None) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("name: {e}"), Some("name")),
    };
    let type_text = q.qtype.unwrap_or_else(|| "A".into());
    let qtype = match type_text.parse::<hickory_proto::rr::RecordType>() {
        Ok(t) => u16::from(t),
        Err(_) => {
            return error(StatusCode::BAD_REQUEST, format!("type: unknown record type {type_text:?}"), Some("type"));
        }
    };
    let client: IpAddr = match q.client.as_deref().map(str::parse) {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(Ok(a)) => a,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "client must be an IP address", Some("client")),
    };
    let ecs = match q.ecs.as_deref() {
        None => None,
        Some(text) => match text
            .split_once('/')
            .and_then(|(a, p)| Some((a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?)))
        {
            Some((a, p)) if p <= if a.is_ipv4() { 32 } else { 128 } => Some((a, p)),
            _ => return error(StatusCode::BAD_REQUEST, "ecs must be ADDRESS/PREFIX, e.g. 81.2.69.0/24", Some("ecs")),
        },
    };
    let snap = api.control.state.load_full();
    Json(crate::explain::explain(&snap, Some(&api.control.load()), &qname, qtype, client, ecs)).into_response()
}
