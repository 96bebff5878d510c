//! A region's load source: where its regional balancer says how full it is, and how that
//! text becomes one utilisation (0 = idle, 1 = at capacity; may exceed 1).
//!
//! | `type`       | keys                                      | utilisation                         |
//! |--------------|-------------------------------------------|-------------------------------------|
//! | `haproxy`    | `url` (the stats page, `;csv` is added), `proxy`, `server` (default `FRONTEND`, or `BACKEND`) | `(scur + qcur) / slim`; a backend without `slim`: `(scur + qcur) / capacity`; a backend with servers configured but some not active: at least `1 - act/servers`… see [`haproxy`] |
//! | `prometheus` | `url`, `metric`, `labels`, `capacity`     | sum of matching samples / capacity  |
//! | `json`       | `url`, `pointer` (a utilisation), or `current` and `capacity` (pointers, or a number for capacity) | the value, or current / capacity |
//!
//! Every source has `interval` (default 2s, each wait ±10 %) and `timeout` (default 1s, at
//! most half the interval). `capacity` falls back to the region's `capacity`. Plain HTTP
//! only: a regional balancer's stats port is normally internal.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How many bytes of a load page are read at most.
pub const BODY_LIMIT: usize = 4 << 20;

/// One region's validated `[regions.NAME.load]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// What the source reads and how it turns it into a utilisation.
    pub kind: SourceKind,
    /// The page fetched (HAProxy: the stats URL; `;csv` is added when missing).
    pub url: String,
    /// Time between readings (each wait ±10 % at random).
    pub interval: Duration,
    /// How long one reading may take.
    pub timeout: Duration,
    /// https: the only certificates trusted (`tls_ca_file`, DER); empty: the system's roots.
    pub tls_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl LoadConfig {
    /// The `type` as configured: `haproxy`, `prometheus` or `json`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            SourceKind::Haproxy { .. } => "haproxy",
            SourceKind::Prometheus { .. } => "prometheus",
            SourceKind::Json { .. } => "json",
        }
    }

    /// The URL fetched: HAProxy's stats page in CSV.
    pub fn fetch_url(&self) -> String {
        match self.kind {
            SourceKind::Haproxy { .. } if !self.url.ends_with(";csv") => format!("{};csv", self.url),
            _ => self.url.clone(),
        }
    }

    /// The utilisation in a fetched page.
    pub fn parse(&self, body: &str) -> Result<f64, LoadFailure> {
        match &self.kind {
            SourceKind::Haproxy { proxy, server, capacity } => haproxy(body, proxy, server, *capacity),
            SourceKind::Prometheus { metric, labels, capacity } => prometheus(body, metric, labels, *capacity),
            SourceKind::Json { value, capacity } => json(body, value, capacity),
        }
    }
}

/// What a source reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// HAProxy's stats CSV: the row of `proxy` (pxname) and `server` (svname: `FRONTEND`,
    /// `BACKEND`).
    /// `capacity`: sessions the row can take, instead of its `slim`.
    #[allow(missing_docs, reason = "the fields are named in the variant's doc")]
    Haproxy { proxy: String, server: String, capacity: Option<f64> },
    /// The sum of the samples of `metric` whose labels include `labels`, over `capacity`.
    /// `metric`: the sample name; `labels`: matchers every summed sample must have;
    /// `capacity`: the figure that is 100 %.
    #[allow(missing_docs, reason = "the fields are named in the variant's doc")]
    Prometheus { metric: String, labels: BTreeMap<String, String>, capacity: f64 },
    /// `value`: a pointer to a utilisation (capacity None) or to a current figure.
    /// `value` and a JSON pointer (RFC 6901); `capacity`: the denominator, if `value` is a
    /// current figure rather than a utilisation.
    #[allow(missing_docs, reason = "the fields are named in the variant's doc")]
    Json { value: String, capacity: Option<JsonCapacity> },
}

/// The denominator of a JSON source.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonCapacity {
    /// A JSON pointer (RFC 6901) to the capacity in the same document.
    Pointer(String),
    /// A configured capacity.
    Fixed(f64),
}

/// Why a load reading failed: typed so logs, metrics and the admin API agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadFailure {
    /// No answer within the source's timeout.
    Timeout(Duration),
    /// The connection failed (refused, unreachable ...).
    Connect(String),
    /// An HTTP status other than 2xx.
    Status(u16),
    /// The page was read but does not say what we need (no such row, not a number ...).
    Parse(String),
}

impl LoadFailure {
    /// A short label for metrics (`gslbd_load_read_failures_total{reason=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            LoadFailure::Timeout(_) => "timeout",
            LoadFailure::Connect(_) => "connect",
            LoadFailure::Status(_) => "status",
            LoadFailure::Parse(_) => "parse",
        }
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadFailure::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            LoadFailure::Connect(e) => write!(f, "cannot read: {e}"),
            LoadFailure::Status(s) => write!(f, "status {s}"),
            LoadFailure::Parse(e) => write!(f, "unreadable: {e}"),
        }
    }
}

fn bad(msg: impl Into<String>) -> LoadFailure {
    LoadFailure::Parse(msg.into())
}

/// HAProxy stats CSV (`# pxname,svname,qcur,qmax,scur,smax,slim,...`; columns found by
/// name). Utilisation = `(scur + qcur) / slim` (`slim` or, when the row has none, the
/// source's `capacity`). For a backend, servers that are configured but not active (`act`
/// against the number of server rows of that backend) count too: a backend with half its
/// servers down is at least half full, whatever its sessions say.
pub fn haproxy(body: &str, proxy: &str, server: &str, capacity: Option<f64>) -> Result<f64, LoadFailure> {
    let mut lines = body.lines();
    let header = lines.next().ok_or_else(|| bad("empty page"))?;
    let header = header.strip_prefix("# ").ok_or_else(|| bad("not HAProxy stats CSV (no '# pxname' header)"))?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).ok_or_else(|| bad(format!("no column {name}")));
    let (px, sv, scur, qcur, slim, act) =
        (col("pxname")?, col("svname")?, col("scur")?, col("qcur")?, col("slim")?, col("act")?);
    let num = |f: &[&str], i: usize| -> f64 { f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) };
    let mut row = None;
    let mut servers = 0usize;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(px) != Some(&proxy) {
            continue;
        }
        match f.get(sv) {
            Some(s) if *s == server => row = Some(f),
            Some(s) if *s != "FRONTEND" && *s != "BACKEND" => servers += 1,
            _ => {}
        }
    }
    let f = row.ok_or_else(|| bad(format!("no row {proxy}/{server}")))?;
    let used = num(&f, scur) + num(&f, qcur);
    let limit = f.get(slim).and_then(|v| v.parse::<f64>().ok()).filter(|l| *l > 0.0).or(capacity);
    let limit = limit.ok_or_else(|| bad(format!("{proxy}/{server} has no session limit (slim); set capacity")))?;
    let mut u = used / limit;
    if server == "BACKEND" && servers > 0 {
        let active = num(&f, act);
        u = u.max(1.0 - active / servers as f64);
    }
    Ok(u)
}

/// The sum of the samples of `metric` whose labels include every one of `want`, over
/// `capacity` (Prometheus text format 0.0.4).
pub fn prometheus(
    body: &str,
    metric: &str,
    want: &BTreeMap<String, String>,
    capacity: f64,
) -> Result<f64, LoadFailure> {
    let mut sum = 0.0;
    let mut found = false;
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let (labels, value) = match rest.chars().next() {
            Some('{') => match rest.find('}') {
                Some(end) => (&rest[1..end], rest[end + 1..].trim()),
                None => return Err(bad(format!("unterminated labels: {line}"))),
            },
            Some(' ') | Some('\t') => ("", rest.trim()),
            _ => continue, // another metric whose name starts with ours
        };
        let have = parse_labels(labels);
        if !want.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v)) {
            continue;
        }
        let value = value.split_whitespace().next().unwrap_or("");
        let v: f64 = value.parse().map_err(|_| bad(format!("{metric}: {value:?} is not a number")))?;
        if !v.is_finite() {
            return Err(bad(format!("{metric}: {value} is not finite")));
        }
        sum += v;
        found = true;
    }
    if !found {
        return Err(bad(format!("no sample of {metric} matches")));
    }
    Ok(sum / capacity)
}

/// `a="x",b="y"` as pairs (escaped quotes inside values are kept escaped: matching compares
/// the text as written).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(after) = after.trim_start().strip_prefix('"') else { break };
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        out.push((key, after[..end].to_string()));
        rest = &after[end + 1..];
    }
    out
}

/// A JSON document: the number at `value` (a JSON pointer), over the capacity if any.
pub fn json(body: &str, value: &str, capacity: &Option<JsonCapacity>) -> Result<f64, LoadFailure> {
    let doc: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    let number = |p: &str| -> Result<f64, LoadFailure> {
        let v = doc.pointer(p).ok_or_else(|| bad(format!("nothing at {p}")))?;
        v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad(format!("{p} is not a number")))
    };
    let v = number(value)?;
    let cap = match capacity {
        None => return Ok(v),
        Some(JsonCapacity::Fixed(c)) => *c,
        Some(JsonCapacity::Pointer(p)) => number(p)?,
    };
    if cap <= 0.0 {
        return Err(bad(format!("capacity {cap} is not positive")));
    }
    Ok(v / cap)
}

/// Fetches the page and parses it, within the timeout.
pub async fn read(client: &reqwest::Client, cfg: &LoadConfig) -> Result<f64, LoadFailure> {
    let attempt = async {
        let mut resp =
            client.get(cfg.fetch_url()).send().await.map_err(|e| LoadFailure::Connect(crate::diag::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(LoadFailure::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| LoadFailure::Connect(crate::diag::error_chain(&e)))? {
            body.extend_from_slice(&chunk);
            if body.len() > BODY_LIMIT {
                return Err(bad(format!("page larger than {BODY_LIMIT} bytes")));
            }
        }
        let text = String::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        cfg.parse(&text)
    };
    match tokio::time::timeout(cfg.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(LoadFailure::Timeout(cfg.timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck\n\
us-east,FRONTEND,,,15,20,20,100,0,0,0,0,0,,,,,OPEN,,,\n\
us-east-backends,backend-1,0,0,3,5,,50,0,0,,0,,0,0,0,0,UP,1,1,0\n\
us-east-backends,backend-2,0,0,0,5,,50,0,0,,0,,0,0,0,0,DOWN,1,1,0\n\
us-east-backends,BACKEND,4,4,3,10,,100,0,0,0,0,,0,0,0,0,UP,1,1,0\n";

    #[test]
    fn haproxy_table() {
        // (proxy, server, capacity, want)
        type Case = (&'static str, &'static str, Option<f64>, Result<f64, &'static str>);
        let cases: &[Case] = &[
            ("us-east", "FRONTEND", None, Ok(0.75)),
            // No slim on the backend row: capacity; (3 + 4) / 10 = 0.7; one of two servers
            // active: at least 0.5.
            ("us-east-backends", "BACKEND", Some(10.0), Ok(0.7)),
            ("us-east-backends", "BACKEND", Some(100.0), Ok(0.5)),
            ("us-east-backends", "BACKEND", None, Err("parse")),
            ("nope", "FRONTEND", None, Err("parse")),
        ];
        for (proxy, server, cap, want) in cases {
            let got = haproxy(CSV, proxy, server, *cap).map_err(|e| e.kind());
            assert_eq!(got.map(|u| (u * 100.0).round() / 100.0), *want, "{proxy}/{server}");
        }
        assert_eq!(haproxy("<html>oops</html>", "a", "FRONTEND", None).map_err(|e| e.kind()), Err("parse"));
        assert_eq!(haproxy("", "a", "FRONTEND", None).map_err(|e| e.kind()), Err("parse"));
    }

    #[test]
    fn prometheus_table() {
        let text = "# HELP nginx_connections_active Active connections\n\
# TYPE nginx_connections_active gauge\n\
nginx_connections_active 42\n\
nginx_connections_active_total 7\n\
envoy_cx_active{cluster=\"api\",zone=\"a\"} 30\n\
envoy_cx_active{cluster=\"api\",zone=\"b\"} 10 1700000000\n\
envoy_cx_active{cluster=\"web\",zone=\"a\"} 500\n";
        let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        type Case = (&'static str, BTreeMap<String, String>, f64, Result<f64, &'static str>);
        let cases: &[Case] = &[
            ("nginx_connections_active", l(&[]), 100.0, Ok(0.42)),
            ("envoy_cx_active", l(&[("cluster", "api")]), 80.0, Ok(0.5)),
            ("envoy_cx_active", l(&[("cluster", "api"), ("zone", "b")]), 10.0, Ok(1.0)),
            ("envoy_cx_active", l(&[]), 1000.0, Ok(0.54)),
            ("envoy_cx_active", l(&[("cluster", "db")]), 10.0, Err("parse")),
            ("missing", l(&[]), 10.0, Err("parse")),
        ];
        for (metric, labels, cap, want) in cases {
            let got = prometheus(text, metric, labels, *cap).map_err(|e| e.kind());
            assert_eq!(got, *want, "{metric} {labels:?}");
        }
        assert_eq!(prometheus("x NaN\n", "x", &l(&[]), 1.0).map_err(|e| e.kind()), Err("parse"));
        assert_eq!(prometheus("x{a=\"1\" 3\n", "x", &l(&[]), 1.0).map_err(|e| e.kind()), Err("parse"));
    }

    #[test]
    fn json_table() {
        let doc = r#"{"load": {"utilisation": 0.35, "current": 30, "max": 120, "name": "x"}}"#;
        let cases: &[(&str, Option<JsonCapacity>, Result<f64, &str>)] = &[
            ("/load/utilisation", None, Ok(0.35)),
            ("/load/current", Some(JsonCapacity::Pointer("/load/max".into())), Ok(0.25)),
            ("/load/current", Some(JsonCapacity::Fixed(60.0)), Ok(0.5)),
            ("/load/name", None, Err("parse")),
            ("/nope", None, Err("parse")),
            ("/load/current", Some(JsonCapacity::Fixed(0.0)), Err("parse")),
        ];
        for (ptr, cap, want) in cases {
            assert_eq!(json(doc, ptr, cap).map_err(|e| e.kind()), *want, "{ptr}");
        }
        assert_eq!(json("garbage", "/a", &None).map_err(|e| e.kind()), Err("parse"));
    }
}
