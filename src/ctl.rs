//! `gslbd ctl`: the admin API from a shell, like `knotc` or `gdnsdctl`. It finds the admin
//! address and a token in the configuration file (or takes them from flags and the
//! environment), calls one endpoint, and prints a table for humans or, with `--json`, the
//! API's own JSON for scripts. Any failure (no server, a refused token, a 4xx) is a
//! [`CtlError`] whose message is the API's own, and a non-zero exit status.
//!
//! The config file is read only for its `[admin]` table, without validating the rest: a
//! config being edited, with errors elsewhere, must not keep `gslbd ctl reload` from
//! showing those errors.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// Where `gslbd ctl` looks for the configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/gslbd/gslbd.toml";
/// The admin API's address when the config does not set `[admin] listen`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8053";
/// The environment variable holding a token (the server reads the same one).
pub const TOKEN_ENV: &str = "GSLBD_ADMIN_TOKEN";
/// How long one call to the API may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask the admin API.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `GET /v1/status`.
    Status,
    /// `GET /v1/explain?name=&type=[&ecs=]`.
    /// `name` is the query name, `qtype` the record type (e.g. `A`), `ecs` a client subnet to
    /// answer for (`192.0.2.0/24`).
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Explain { name: String, qtype: String, ecs: Option<String> },
    /// `POST /v1/regions/{region}/drain`; `dry_run` adds `?dry_run=true` (the projection
    /// only, nothing changes), `force` sends `{"force": true}` (drain even when a remaining
    /// region would go over `drain_max_utilisation`, or, in cluster mode, a service below
    /// its `min_healthy`).
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Drain { region: String, dry_run: bool, force: bool },
    /// `POST /v1/regions/{region}/undrain`; `force` as for [`Request::Drain`].
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Undrain { region: String, force: bool },
    /// `PUT /v1/regions/{region}/weight` with `{"weight": N}`; `force` (cluster mode) adds
    /// `"force": true` past the `min_healthy` guard rail.
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Weight { region: String, weight: u32, force: bool },
    /// `POST /v1/regions/{region}/force` with `{"state": "up"|"down"|"auto"}` and, for
    /// `for_seconds`, `"ttl_seconds"`.
    /// `state` is `up`, `down` or `auto`; `for_seconds` limits a force to that many seconds;
    /// `force` (cluster mode) adds `"force": true` past the `min_healthy` guard rail.
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Force { region: String, state: String, for_seconds: Option<u64>, force: bool },
    /// `POST /v1/reload`.
    Reload,
}

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:8053`, without a trailing slash.
    pub base: String,
    /// The bearer token's secret, if one was found.
    pub token: Option<String>,
}

/// Why a `gslbd ctl` command failed. Display is the message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The config file could not be read or its `[admin]` table makes no sense.
    /// `path` is the config file, `message` what is wrong with it.
    #[error("{}: {message}\n  hint: pass --admin URL (and --token-file FILE), or --config FILE", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Config { path: PathBuf, message: String },
    /// The token file could not be read, or holds no token.
    /// `path` is the token file, `message` what is wrong with it.
    #[error("{}: {message}", path.display())]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    TokenFile { path: PathBuf, message: String },
    /// `--admin` is not an http:// URL.
    /// `url` is the value given, `message` what is wrong with it.
    #[error("--admin {url:?}: {message}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    AdminUrl { url: String, message: String },
    /// Nothing answered at the admin address (or it did not answer in time).
    /// `base` is the admin API's base URL, `message` the HTTP client's error.
    #[error(
        "cannot reach the admin API at {base}: {message}\n  hint: is gslbd running, with [admin] listen at that address?"
    )]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Unreachable { base: String, message: String },
    /// The API answered with an error status; `message` is the API's own.
    /// `status` is the HTTP status code, `body` the whole JSON body (for `--json`).
    #[error("{status}: {message}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Api { status: u16, message: String, body: String },
    /// The API's answer was not the JSON expected.
    /// `base` is the admin API's base URL, `message` what was wrong with the answer.
    #[error("unexpected answer from {base}: {message}")]
    #[allow(missing_docs, reason = "fields named in the variant's doc")]
    Answer { base: String, message: String },
}

impl CtlError {
    /// The JSON body of an API error (for `--json`), when there is one.
    pub fn api_body(&self) -> Option<&str> {
        match self {
            CtlError::Api { body, .. } if !body.is_empty() => Some(body),
            _ => None,
        }
    }
}

/// Finds the admin API: `admin` (a URL) if given, else `[admin] listen` of `config`
/// (default [`DEFAULT_CONFIG`]); a wildcard listen address is reached on loopback. The
/// token: `token_file`, else `$GSLBD_ADMIN_TOKEN`, else the first token of the config's
/// `[admin] token_file` (lines `id:secret` or `secret`, as the server reads them). With
/// `admin` given, a config that cannot be read only means no token from it.
pub fn target(admin: Option<&str>, config: Option<&Path>, token_file: Option<&Path>) -> Result<Target, CtlError> {
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    let admin_table = || -> Result<Option<toml::Table>, CtlError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CtlError::Config { path: path.into(), message: format!("cannot read: {e}") })?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| CtlError::Config { path: path.into(), message: format!("not valid TOML: {e}") })?;
        Ok(table.remove("admin").and_then(|a| a.as_table().cloned()))
    };
    let (base, table) = match admin {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            if !base.starts_with("http://") {
                return Err(CtlError::AdminUrl { url: url.into(), message: "want http://HOST:PORT".into() });
            }
            (base, admin_table().ok().flatten())
        }
        None => {
            let table = admin_table()?;
            let listen = match table.as_ref().and_then(|a| a.get("listen")) {
                None => DEFAULT_ADMIN.parse().ok(),
                Some(v) => v.as_str().and_then(|s| s.parse::<SocketAddr>().ok()),
            }
            .ok_or_else(|| CtlError::Config {
                path: path.into(),
                message: "admin.listen is not an ADDR:PORT".into(),
            })?;
            (format!("http://{}", reachable(listen)), table)
        }
    };
    let token = match (token_file, std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty())) {
        (Some(file), _) => Some(first_token(file)?),
        (None, Some(env)) => Some(env),
        (None, None) => match table.as_ref().and_then(|a| a.get("token_file")).and_then(toml::Value::as_str) {
            Some(f) => Some(first_token(&path.parent().unwrap_or(Path::new(".")).join(f))?),
            None => None,
        },
    };
    Ok(Target { base, token })
}

/// A listen address as a client dials it: `0.0.0.0` and `[::]` on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(a) if a.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

fn first_token(path: &Path) -> Result<String, CtlError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::TokenFile { path: path.into(), message: format!("cannot read: {e}") })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(':').map_or(l, |(_, secret)| secret).to_string())
        .ok_or_else(|| CtlError::TokenFile { path: path.into(), message: "holds no token".into() })
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl Request {
    /// Method, path (with query string) and JSON body of the call.
    pub fn call(&self) -> (reqwest::Method, String, Option<Value>) {
        use reqwest::Method;
        let region = |r: &str, what: &str| format!("/v1/regions/{}/{what}", encode(r));
        match self {
            Request::Status => (Method::GET, "/v1/status".into(), None),
            Request::Explain { name, qtype, ecs } => {
                let mut path = format!("/v1/explain?name={}&type={}", encode(name), encode(qtype));
                if let Some(ecs) = ecs {
                    let _ = write!(path, "&ecs={}", encode(ecs));
                }
                (Method::GET, path, None)
            }
            Request::Drain { region: r, dry_run, force } => {
                let path = if *dry_run { region(r, "drain?dry_run=true") } else { region(r, "drain") };
                (Method::POST, path, force.then(|| json!({ "force": true })))
            }
            Request::Undrain { region: r, force } => {
                (Method::POST, region(r, "undrain"), force.then(|| json!({ "force": true })))
            }
            Request::Weight { region: r, weight, force } => {
                let mut body = json!({ "weight": weight });
                if *force {
                    body["force"] = json!(true);
                }
                (Method::PUT, region(r, "weight"), Some(body))
            }
            Request::Force { region: r, state, for_seconds, force } => {
                let mut body = json!({ "state": state });
                if let Some(t) = for_seconds {
                    body["ttl_seconds"] = json!(t);
                }
                if *force {
                    body["force"] = json!(true);
                }
                (Method::POST, region(r, "force"), Some(body))
            }
            Request::Reload => (Method::POST, "/v1/reload".into(), None),
        }
    }
}

/// Calls the API; returns the JSON body of a 2xx answer, or the API's error.
pub fn send(target: &Target, request: &Request) -> Result<Value, CtlError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| CtlError::Unreachable {
        base: target.base.clone(),
        message: format!("cannot start a runtime: {e}"),
    })?;
    rt.block_on(send_async(target, request))
}

async fn send_async(target: &Target, request: &Request) -> Result<Value, CtlError> {
    let unreachable =
        |e: reqwest::Error| CtlError::Unreachable { base: target.base.clone(), message: crate::diag::error_chain(&e) };
    // reqwest is built without a TLS provider of its own (the prober brings ring); the admin
    // API is plain HTTP, but the client still wants a provider installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(TIMEOUT).no_proxy().build().map_err(unreachable)?;
    let (method, path, body) = request.call();
    let mut req = client.request(method, format!("{}{path}", target.base));
    if let Some(t) = &target.token {
        req = req.header(reqwest::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
    }
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    let text = resp.text().await.map_err(unreachable)?;
    let json: Option<Value> = serde_json::from_str(&text).ok();
    if !status.is_success() {
        let message =
            json.as_ref().map(api_error_message).unwrap_or_else(|| text.trim().to_string()).trim_end().to_string();
        return Err(CtlError::Api { status: status.as_u16(), message, body: text });
    }
    json.ok_or_else(|| CtlError::Answer { base: target.base.clone(), message: "not JSON".into() })
}

/// The message of an API error body: `error`, the `field` it names, and every entry of
/// `errors` (a reload's validation errors: strings, or objects with file, line, column,
/// message and hint).
fn api_error_message(v: &Value) -> String {
    let mut out = v["error"].as_str().unwrap_or("request failed").to_string();
    if let Some(f) = v["field"].as_str() {
        let _ = write!(out, " (field {f:?})");
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        out.push('\n');
        match e {
            Value::String(s) => out.push_str(s),
            Value::Object(o) => {
                let at = [o.get("file"), o.get("line"), o.get("column")]
                    .iter()
                    .filter_map(|x| {
                        x.filter(|v| !v.is_null()).map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                    })
                    .collect::<Vec<_>>()
                    .join(":");
                let message = o.get("message").and_then(Value::as_str).unwrap_or("");
                if at.is_empty() {
                    let _ = write!(out, "error: {message}");
                } else {
                    let _ = write!(out, "{at}: error: {message}");
                }
                if let Some(h) = o.get("hint").and_then(Value::as_str) {
                    let _ = write!(out, "\n  hint: {h}");
                }
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// Lays out rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn list(v: &Value) -> String {
    let items: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if items.is_empty() { "-".into() } else { items.join(",") }
}

fn or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The override of a status region in a few words: drained, weight, forced state.
fn describe_override(o: &Value) -> String {
    let mut parts = Vec::new();
    if o["drained"].as_bool() == Some(true) {
        parts.push("drained".to_string());
    }
    if let Some(w) = o["weight"].as_u64() {
        parts.push(format!("weight={w}"));
    }
    if let Some(f) = o.get("force").filter(|f| !f.is_null()) {
        let state = if f["up"].as_bool() == Some(true) { "up" } else { "down" };
        match f["until"].as_u64() {
            Some(until) => parts.push(format!("forced {state} until {}", utc(until))),
            None => parts.push(format!("forced {state}")),
        }
    }
    if parts.is_empty() { "-".into() } else { parts.join(" ") }
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (the proleptic Gregorian
/// calendar, by Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// What `gslbd ctl` prints for a successful call, for humans.
pub fn render(request: &Request, v: &Value) -> String {
    match request {
        Request::Status => render_status(v),
        Request::Explain { .. } => render_explain(v),
        Request::Reload => {
            let mut out = "reloaded: the new configuration and zones are serving\n".to_string();
            let later: Vec<&str> =
                v["restart_needed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !later.is_empty() {
                out += &format!("changed, but only a restart applies them: {}\n", later.join("; "));
            }
            out
        }
        Request::Drain { dry_run: true, .. } => render_projection(&v["projection"]),
        Request::Drain { region, .. }
        | Request::Undrain { region, .. }
        | Request::Weight { region, .. }
        | Request::Force { region, .. } => {
            format!("ok: {region}: {}\n", describe_override(&v["override"]))
        }
    }
}

/// A drain's dry run: each remaining region's utilisation now and after, and the verdict.
fn render_projection(p: &Value) -> String {
    let util = |u: &Value| u.as_f64().map_or("unknown".to_string(), |u| format!("{u:.2}"));
    let max = p["max_utilisation"].as_f64().unwrap_or(0.9);
    let rows: Vec<Vec<String>> = p["remaining"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let over = r["projected_utilisation"].as_f64().is_some_and(|u| u > max);
            vec![
                or_dash(&r["region"]),
                util(&r["utilisation"]),
                util(&r["projected_utilisation"]),
                if over { format!("OVER {max}") } else { String::new() },
            ]
        })
        .collect();
    let mut out = format!(
        "dry run: draining {} (utilisation {}) would move its clients to:\n",
        or_dash(&p["region"]),
        util(&p["utilisation"])
    );
    out += &table(&["REGION", "NOW", "AFTER", ""], &rows);
    let names = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect()
    };
    // Each limit the drain would meet: the safe-drain projection, and cluster mode's
    // min_healthy guard rail (always empty without [cluster]).
    let (overloaded, below) = (names(&p["overloaded"]), names(&p["below_min_healthy"]));
    let mut refusals = Vec::new();
    if !overloaded.is_empty() {
        refusals.push(format!("{} over {max}", overloaded.join(", ")));
    }
    if !below.is_empty() {
        refusals.push(format!("{} would go below min_healthy", below.join(", ")));
    }
    if refusals.is_empty() {
        out += &format!("no region over {max}: the drain would be accepted (nothing changed)\n");
    } else {
        out += &format!("{}: the drain would be refused without --force (nothing changed)\n", refusals.join("; "));
    }
    out
}

/// Cluster mode's line of `status`: this instance, etcd, the members and what differs
/// (empty without `[cluster]`).
fn render_cluster(c: &Value) -> String {
    if !c.is_object() {
        return String::new();
    }
    let members: Vec<String> = c["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = or_dash(&m["instance"]);
            if m["ready"].as_bool() == Some(true) { name } else { format!("{name} (not ready)") }
        })
        .collect();
    let connected = if c["connected"].as_bool() == Some(true) { "connected to etcd" } else { "ETCD UNREACHABLE" };
    let since = c["since"].as_u64().map_or("-".to_string(), utc);
    let mut out = format!(
        "cluster: instance {} (site {}), {connected} since {since}{}; members {}\n",
        or_dash(&c["instance"]),
        or_dash(&c["site"]),
        if c["standalone"].as_bool() == Some(true) { ", STANDALONE (probing every region)" } else { "" },
        if members.is_empty() { "-".to_string() } else { members.join(", ") }
    );
    let differing = list(&c["differing_config"]);
    if differing != "-" {
        out += &format!("cluster: members with another config, zones or GeoIP database: {differing}\n");
    }
    out
}

fn render_status(v: &Value) -> String {
    let regions: Vec<Vec<String>> = v["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let recent: String = r["recent_probes"]
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .take(10)
                .map(|p| if p["ok"].as_bool() == Some(true) { '+' } else { '-' })
                .collect();
            vec![
                or_dash(&r["name"]),
                if r["up"].as_bool() == Some(true) { "yes".into() } else { "NO".into() },
                or_dash(&r["health"]),
                format!("{}/{}", or_dash(&r["weight"]["effective"]), or_dash(&r["weight"]["configured"])),
                r["rtt_ewma_ms"].as_f64().map_or("-".into(), |ms| format!("{ms:.1}ms")),
                if recent.is_empty() { "-".into() } else { recent },
                describe_override(&r["override"]),
                or_dash(&r["reason"]),
            ]
        })
        .collect();
    let services: Vec<Vec<String>> = v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                or_dash(&s["name"]),
                list(&s["policy"]),
                or_dash(&s["mode"]),
                or_dash(&s["ttl"]),
                list(&s["answer_set"]["A"]),
                list(&s["answer_set"]["AAAA"]),
            ]
        })
        .collect();
    let mut out = format!(
        "gslbd {}, up {} s, {} zones\n",
        or_dash(&v["version"]),
        or_dash(&v["uptime_seconds"]),
        v["zones"].as_array().map_or(0, Vec::len)
    );
    out += &render_cluster(&v["cluster"]);
    out += "\nREGIONS\n";
    out += &table(&["NAME", "UP", "HEALTH", "WEIGHT", "RTT", "RECENT", "OVERRIDE", "REASON"], &regions);
    out += "\nSERVICES\n";
    out += &table(&["NAME", "POLICY", "MODE", "TTL", "ANSWER A", "ANSWER AAAA"], &services);
    out
}

fn render_explain(v: &Value) -> String {
    let q = &v["query"];
    let mut out = format!("{} {}", or_dash(&q["name"]), or_dash(&q["type"]));
    if let Some(ecs) = q["ecs"].as_str() {
        let _ = write!(out, " for ECS {ecs}");
    }
    let c = &v["client"];
    let _ = write!(out, "\nclient {} (from {})", or_dash(&c["address"]), or_dash(&c["from"]));
    let l = &c["location"];
    if !l.is_null() {
        let _ = write!(
            out,
            ", located {} {} {}",
            or_dash(&l["continent"]),
            or_dash(&l["country"]),
            l["subdivision"].as_str().unwrap_or("")
        );
    }
    let a = &v["answer"];
    let _ = write!(out, "\nanswer {}", or_dash(&a["rcode"]));
    if let Some(scope) = a["ecs_scope"].as_u64() {
        let _ = write!(out, ", ECS scope {scope}");
    }
    out.push('\n');
    for r in a["records"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}", r.as_str().unwrap_or(""));
    }
    if let Some(reason) = v["reason"].as_str() {
        let _ = writeln!(out, "{reason}");
    }
    let s = &v["service"];
    if !s.is_null() {
        let _ = writeln!(
            out,
            "service {}: policy {}, mode {}, TTL {}",
            or_dash(&s["name"]),
            list(&s["policy"]),
            or_dash(&s["mode"]),
            or_dash(&s["ttl"])
        );
        for step in s["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<10} {} -> {}",
                or_dash(&step["policy"]),
                list(&step["before"]),
                list(&step["after"])
            );
        }
        for r in s["regions"].as_array().into_iter().flatten() {
            if let Some(why) = r["skipped"].as_str() {
                let _ = writeln!(out, "  skipped {}: {why}", or_dash(&r["name"]));
            }
        }
        let _ = writeln!(out, "chosen {}", list(&s["chosen"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_api_calls() {
        let cases: &[(Request, &str, &str, Option<Value>)] = &[
            (Request::Status, "GET", "/v1/status", None),
            (
                Request::Explain {
                    name: "www.demo.test".into(),
                    qtype: "AAAA".into(),
                    ecs: Some("81.2.69.0/24".into()),
                },
                "GET",
                "/v1/explain?name=www.demo.test&type=AAAA&ecs=81.2.69.0%2F24",
                None,
            ),
            (
                Request::Drain { region: "eu-west".into(), dry_run: false, force: false },
                "POST",
                "/v1/regions/eu-west/drain",
                None,
            ),
            (
                Request::Drain { region: "eu-west".into(), dry_run: true, force: false },
                "POST",
                "/v1/regions/eu-west/drain?dry_run=true",
                None,
            ),
            (
                Request::Drain { region: "eu-west".into(), dry_run: false, force: true },
                "POST",
                "/v1/regions/eu-west/drain",
                Some(json!({"force": true})),
            ),
            (
                Request::Undrain { region: "eu west".into(), force: false },
                "POST",
                "/v1/regions/eu%20west/undrain",
                None,
            ),
            (
                Request::Weight { region: "a".into(), weight: 7, force: false },
                "PUT",
                "/v1/regions/a/weight",
                Some(json!({"weight": 7})),
            ),
            (
                Request::Force { region: "a".into(), state: "down".into(), for_seconds: Some(600), force: false },
                "POST",
                "/v1/regions/a/force",
                Some(json!({"state": "down", "ttl_seconds": 600})),
            ),
            (
                Request::Force { region: "a".into(), state: "auto".into(), for_seconds: None, force: true },
                "POST",
                "/v1/regions/a/force",
                Some(json!({"state": "auto", "force": true})),
            ),
            (Request::Reload, "POST", "/v1/reload", None),
        ];
        for (req, method, path, body) in cases {
            let (m, p, b) = req.call();
            assert_eq!((m.as_str(), p.as_str(), &b), (*method, *path, body), "{req:?}");
        }
    }

    #[test]
    fn the_target_comes_from_the_config_file_or_the_flags() {
        let dir = crate::testutil::TempDir::new("ctl");
        dir.write("admin.token", "# ops\nops:s3cret\nother:x\n");
        let cfg = dir.write(
            "gslbd.toml",
            "[zones]\ndirectory = \"z\"\n[admin]\nlisten = \"0.0.0.0:9053\"\ntoken_file = \"admin.token\"\n",
        );
        let t = target(None, Some(&cfg), None).unwrap();
        assert_eq!(t, Target { base: "http://127.0.0.1:9053".into(), token: Some("s3cret".into()) });
        // No [admin] table: the default address, no token.
        let bare = dir.write("bare.toml", "[zones]\ndirectory = \"z\"\n");
        assert_eq!(target(None, Some(&bare), None).unwrap().base, "http://127.0.0.1:8053");
        // Flags win; with --admin, the config still gives the token.
        let tf = dir.write("t2", "plain-secret\n");
        let t = target(Some("http://[::1]:8054/"), None, Some(&tf)).unwrap();
        assert_eq!(t, Target { base: "http://[::1]:8054".into(), token: Some("plain-secret".into()) });
        let t = target(Some("http://127.0.0.1:1"), Some(&cfg), None).unwrap();
        assert_eq!(t.token.as_deref(), Some("s3cret"));
        let t = target(Some("http://127.0.0.1:1"), Some(&dir.path().join("missing.toml")), None).unwrap();
        assert_eq!(t.token, None);
        // Errors name the file.
        let e = target(None, Some(&dir.path().join("missing.toml")), None).unwrap_err().to_string();
        assert!(e.contains("missing.toml: cannot read") && e.contains("hint: pass --admin URL"), "{e}");
        let e = target(Some("127.0.0.1:8053"), None, None).unwrap_err().to_string();
        assert!(e.contains("want http://HOST:PORT"), "{e}");
        let empty = dir.write("empty.token", "\n# nothing\n");
        let e = target(Some("http://127.0.0.1:1"), None, Some(&empty)).unwrap_err().to_string();
        assert!(e.ends_with("empty.token: holds no token"), "{e}");
    }

    #[test]
    fn api_errors_read_as_the_api_says_them() {
        let v = json!({"error": "unknown region \"x\"", "field": "name"});
        assert_eq!(api_error_message(&v), "unknown region \"x\" (field \"name\")");
        let v = json!({"error": "invalid configuration or zones; nothing changed", "errors": [
            "/etc/gslbd/gslbd.toml:3:15: error: dns.udp_payload: 70000 is out of range",
            {"file": "/etc/gslbd/gslbd.toml", "line": 4, "column": 2, "message": "bad", "hint": "fix it"},
            {"file": "z.zone", "line": null, "column": null, "message": "no SOA", "hint": null},
        ]});
        assert_eq!(
            api_error_message(&v),
            "invalid configuration or zones; nothing changed\n\
             /etc/gslbd/gslbd.toml:3:15: error: dns.udp_payload: 70000 is out of range\n\
             /etc/gslbd/gslbd.toml:4:2: error: bad\n  hint: fix it\n\
             z.zone: error: no SOA"
        );
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_017_735), "2026-11-30T05:48:55Z");
    }

    #[test]
    fn cluster_mode_shows_in_one_line_of_status() {
        assert_eq!(render_cluster(&Value::Null), "");
        let c = json!({
            "instance": "ns1", "site": "fra", "connected": false, "since": 951_782_400, "standalone": true,
            "members": [{"instance": "ns1", "ready": true}, {"instance": "ns2", "ready": false}],
            "differing_config": ["ns2"],
        });
        assert_eq!(
            render_cluster(&c),
            "cluster: instance ns1 (site fra), ETCD UNREACHABLE since 2000-02-29T00:00:00Z, STANDALONE (probing every \
             region); members ns1, ns2 (not ready)\n\
             cluster: members with another config, zones or GeoIP database: ns2\n"
        );
        let c = json!({"instance": "a", "site": "s", "connected": true, "since": 0, "standalone": false,
            "members": [{"instance": "a", "ready": true}], "differing_config": []});
        assert_eq!(
            render_cluster(&c),
            "cluster: instance a (site s), connected to etcd since 1970-01-01T00:00:00Z; members a\n"
        );
    }

    #[test]
    fn a_dry_run_says_whether_the_drain_would_be_refused_and_why() {
        let projection = |overloaded: Value, below: Value| {
            json!({"region": "eu-west", "utilisation": 0.5, "max_utilisation": 0.9,
                "remaining": [{"region": "us-east", "utilisation": 0.4, "projected_utilisation": 0.7}],
                "overloaded": overloaded, "below_min_healthy": below})
        };
        let verdict = |p: Value| render_projection(&p).lines().last().unwrap_or_default().to_string();
        assert_eq!(
            render_projection(&projection(json!([]), json!([]))),
            "dry run: draining eu-west (utilisation 0.50) would move its clients to:\n\
             REGION   NOW   AFTER\n\
             us-east  0.40  0.70\n\
             no region over 0.9: the drain would be accepted (nothing changed)\n"
        );
        assert_eq!(
            verdict(projection(json!(["us-east"]), json!([]))),
            "us-east over 0.9: the drain would be refused without --force (nothing changed)"
        );
        // Cluster mode's guard rail: no region overloaded, yet a service would go below
        // its min_healthy, and the drain itself would get 409.
        assert_eq!(
            verdict(projection(json!([]), json!(["www.svc.test.", "api.svc.test."]))),
            "www.svc.test., api.svc.test. would go below min_healthy: \
             the drain would be refused without --force (nothing changed)"
        );
        assert_eq!(
            verdict(projection(json!(["us-east"]), json!(["www.svc.test."]))),
            "us-east over 0.9; www.svc.test. would go below min_healthy: \
             the drain would be refused without --force (nothing changed)"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }
}
