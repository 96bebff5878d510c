//! `[health]` and the health checks of a region (`[regions.NAME.check]` or
//! `[[regions.NAME.checks]]` with `quorum`), validated into plain values the prober runs.
//!
//! Defaults, chosen so a dead region leaves the answers in about `interval × fall + timeout`
//! (2 s × 3 + 1 s = 7 s) while one lost packet never moves traffic:
//!
//! | key        | default                | why                                                   |
//! |------------|------------------------|-------------------------------------------------------|
//! | `interval` | 2s                     | ±10% jitter per probe, so regions are not in lockstep |
//! | `timeout`  | 1s (at most interval/2)| a probe never overlaps the next one                   |
//! | `rise`     | 2                      | one lucky answer does not bring a region back         |
//! | `fall`     | 3                      | one lost probe does not take a region out             |
//! | `window`, `window_failures` | none  | opt-in: F failures of the last W probes, for endpoints that fail often but never `fall` in a row |
//! | `expect_status` | 200-399           | what load balancers call "up" (redirects included)    |

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use toml::Spanned;

use super::gslb::Report;
use super::{in_range, parse_duration};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
pub const DEFAULT_HISTORY: usize = 10;
/// Shortest interval accepted: faster probing only loads the balancers.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// `[health]`: settings that apply to every region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Whether a region whose checks have not reached a verdict yet (after a start or a
    /// reload that changed its checks) is answered. True by default: a restart must never
    /// empty the answers while the first probes are still in flight.
    pub unknown_is_up: bool,
    /// Probe results kept per region for the admin API.
    pub history: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { unknown_is_up: true, history: DEFAULT_HISTORY }
    }
}

/// One health check of a region. Two checks are equal when they probe the same way, so a
/// reload that leaves a region's checks equal keeps its health state.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// `window` and `window_failures`: also unhealthy when this many of the latest probes
    /// failed, consecutive or not. None (the default): `fall` consecutive failures only.
    pub window: Option<Window>,
}

/// The window rule of a check: unhealthy when at least `failures` of the last `size`
/// probes failed; healthy again after `rise` consecutive successes. Catches an endpoint
/// that fails often but never `fall` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Probes looked at (`window`): 2 to `[health] history`.
    pub size: u32,
    /// Failures among them that make the check unhealthy (`window_failures`): 1 to `size`.
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Http(Box<HttpCheck>),
    /// A TCP connect to `host:port`.
    Tcp {
        address: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

/// An HTTP or HTTPS check (the URL's scheme says which).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// What is probed: its host may differ from the addresses the region answers with.
    pub url: reqwest::Url,
    pub method: HttpMethod,
    /// Status codes that count as healthy.
    pub expect_status: Vec<RangeInclusive<u16>>,
    /// The first few KiB of the body must contain this.
    pub body_contains: Option<String>,
    pub host_header: Option<String>,
    pub headers: Vec<(String, String)>,
    /// SNI and certificate name, when the URL's host is an address or another name.
    pub tls_server_name: Option<String>,
    /// The only roots trusted for this check (DER), from `tls_ca_file`; empty: the system's.
    pub tls_ca: Vec<CertificateDer<'static>>,
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed test setups). Off unless asked for by name.
    pub tls_insecure: bool,
}

impl HttpCheck {
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    pub fn is_expected(&self, status: u16) -> bool {
        self.expect_status.iter().any(|r| r.contains(&status))
    }
}

/// The host part of a Host header value: `name`, `name:port`, `[v6]` or `[v6]:port`.
pub fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// How many bytes of a body `body_contains` searches.
pub const BODY_LIMIT: usize = 4096;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    unknown: Option<Spanned<String>>,
    history: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    expect_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    body_contains: Option<Spanned<String>>,
    host_header: Option<Spanned<String>>,
    headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    tls_server_name: Option<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
    tls_insecure: Option<Spanned<bool>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    window: Option<Spanned<i64>>,
    window_failures: Option<Spanned<i64>>,
}

pub(super) fn health(raw: RawHealth, report: &mut Report<'_>) -> HealthConfig {
    let mut h = HealthConfig::default();
    if let Some(u) = raw.unknown {
        match u.get_ref().as_str() {
            "up" => h.unknown_is_up = true,
            "down" => h.unknown_is_up = false,
            other => report(
                u.span(),
                format!("health.unknown: {other:?} is not a choice"),
                Some("use \"up\" (answer regions not probed yet) or \"down\""),
            ),
        }
    }
    if let Some(v) = raw.history.and_then(|n| in_range(&n, 1..=1000, "health.history", "use 1 to 1000", report)) {
        h.history = v as usize;
    }
    h
}

/// Validates one check; `field` names it in errors (`regions.fra.checks[1]`), `base` anchors
/// `tls_ca_file`, `history` (`[health] history`) bounds `window`.
pub(super) fn check(
    raw: RawCheck,
    field: &str,
    base: &Path,
    history: usize,
    report: &mut Report<'_>,
) -> Option<CheckConfig> {
    let f = |k: &str| format!("{field}.{k}");
    let mut ok = true;
    let mut bad = |span: Range<usize>, message: String, hint: Option<&str>| {
        ok = false;
        report(span, message, hint);
    };
    let kind_name = raw.kind.get_ref().as_str();
    let is_http = match kind_name {
        "http" | "https" => true,
        "tcp" => false,
        other => {
            bad(
                raw.kind.span(),
                format!("{}: {other:?} is not a check type", f("type")),
                Some("use \"http\", \"https\" or \"tcp\""),
            );
            return None;
        }
    };
    // Keys that belong to the other kind of check are mistakes, not silently ignored.
    let http_only: [(&str, Option<Range<usize>>); 9] = [
        ("url", raw.url.as_ref().map(Spanned::span)),
        ("method", raw.method.as_ref().map(Spanned::span)),
        ("expect_status", raw.expect_status.as_ref().map(Spanned::span)),
        ("body_contains", raw.body_contains.as_ref().map(Spanned::span)),
        ("host_header", raw.host_header.as_ref().map(Spanned::span)),
        ("headers", raw.headers.as_ref().and_then(|h| h.keys().next()).map(Spanned::span)),
        ("tls_server_name", raw.tls_server_name.as_ref().map(Spanned::span)),
        ("tls_ca_file", raw.tls_ca_file.as_ref().map(Spanned::span)),
        ("tls_insecure", raw.tls_insecure.as_ref().map(Spanned::span)),
    ];
    if is_http {
        if let Some(a) = &raw.address {
            bad(
                a.span(),
                format!("{}: {kind_name} checks take a url, not an address", f("address")),
                Some("write url = \"http://192.0.2.10/healthz\""),
            );
        }
    } else {
        for (key, span) in http_only {
            if let Some(span) = span {
                bad(
                    span,
                    format!("{}: tcp checks only connect; {key} is for http and https checks", f(key)),
                    Some("remove it, or use type = \"http\""),
                );
            }
        }
    }
    let tls_only = [
        ("tls_server_name", raw.tls_server_name.as_ref().map(Spanned::span)),
        ("tls_ca_file", raw.tls_ca_file.as_ref().map(Spanned::span)),
        ("tls_insecure", raw.tls_insecure.as_ref().map(Spanned::span)),
    ];
    if kind_name == "http" {
        for (key, span) in tls_only {
            if let Some(span) = span {
                bad(
                    span,
                    format!("{}: {key} is for https checks", f(key)),
                    Some("use type = \"https\" with an https:// url"),
                );
            }
        }
    }

    let mut interval = DEFAULT_INTERVAL;
    if let Some(v) = &raw.interval {
        match parse_duration(v.get_ref()) {
            Some(d) if d >= MIN_INTERVAL && d <= Duration::from_secs(3600) => interval = d,
            Some(_) => {
                bad(v.span(), format!("{}: {} is out of range", f("interval"), v.get_ref()), Some("use 50ms to 1h"))
            }
            None => bad(
                v.span(),
                format!("{}: {:?} is not a duration", f("interval"), v.get_ref()),
                Some("write e.g. \"2s\" or \"500ms\""),
            ),
        }
    }
    // Without an explicit timeout a short interval still gets a valid one.
    let mut timeout = DEFAULT_TIMEOUT.min(interval / 2);
    if let Some(v) = &raw.timeout {
        match parse_duration(v.get_ref()) {
            Some(d) if d.is_zero() => {
                bad(v.span(), format!("{}: must be more than 0", f("timeout")), Some("write e.g. \"1s\" or \"500ms\""))
            }
            Some(d) if d >= interval => bad(
                v.span(),
                format!("{}: {} is not shorter than the interval ({:?})", f("timeout"), v.get_ref(), interval),
                Some("a probe must finish before the next one starts: make timeout < interval"),
            ),
            Some(d) => timeout = d,
            None => bad(
                v.span(),
                format!("{}: {:?} is not a duration", f("timeout"), v.get_ref()),
                Some("write e.g. \"1s\" or \"500ms\""),
            ),
        }
    }
    let mut count = |v: &Option<Spanned<i64>>, key: &str, default: u32| {
        v.as_ref()
            .and_then(|v| in_range(v, 1..=100, &f(key), "use 1 to 100 consecutive probes", &mut bad))
            .map_or(default, |n| n as u32)
    };
    let rise = count(&raw.rise, "rise", DEFAULT_RISE);
    let fall = count(&raw.fall, "fall", DEFAULT_FALL);
    let window = window(&raw, field, history, &mut bad);

    let kind = if is_http {
        http(&raw, kind_name, field, base, &mut bad)
    } else {
        match &raw.address {
            None => {
                bad(
                    raw.kind.span(),
                    format!("{field}: a tcp check needs an address"),
                    Some("add address = \"192.0.2.10:443\""),
                );
                None
            }
            Some(a) => match a.get_ref().rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
                    Some(CheckKind::Tcp { address: a.get_ref().clone() })
                }
                _ => {
                    bad(
                        a.span(),
                        format!("{}: {:?} is not host:port", f("address"), a.get_ref()),
                        Some("write e.g. \"192.0.2.10:443\", \"[2001:db8::1]:443\" or \"lb.example.net:443\""),
                    );
                    None
                }
            },
        }
    };
    let kind = kind?;
    ok.then_some(CheckConfig { kind, interval, timeout, rise, fall, window })
}

/// `window` and `window_failures`: both or neither; 2 <= window <= history (the results
/// kept are the ones the admin API shows, so the operator can see what the rule saw);
/// 1 <= window_failures <= window.
fn window(raw: &RawCheck, field: &str, history: usize, bad: &mut Report<'_>) -> Option<Window> {
    let f = |k: &str| format!("{field}.{k}");
    let (w, n) = match (&raw.window, &raw.window_failures) {
        (None, None) => return None,
        (Some(w), Some(n)) => (w, n),
        (Some(w), None) => {
            bad(
                w.span(),
                format!("{}: is set without window_failures", f("window")),
                Some("add window_failures = N: unhealthy when N of the last `window` probes failed"),
            );
            return None;
        }
        (None, Some(n)) => {
            bad(
                n.span(),
                format!("{}: is set without window", f("window_failures")),
                Some("add window = W: the number of latest probes to count failures in"),
            );
            return None;
        }
    };
    let max = history.max(2) as i64;
    let size = *w.get_ref();
    if !(2..=max).contains(&size) {
        bad(
            w.span(),
            format!("{}: {size} is out of range", f("window")),
            Some(&format!("use 2 to {max} ([health] history; raise it for a longer window)")),
        );
        return None;
    }
    let failures = *n.get_ref();
    if !(1..=size).contains(&failures) {
        bad(
            n.span(),
            format!("{}: {failures} is out of range for window = {size}", f("window_failures")),
            Some(&format!("use 1 to {size}: how many of the last {size} probes must fail")),
        );
        return None;
    }
    Some(Window { size: size as u32, failures: failures as u32 })
}

fn http(raw: &RawCheck, kind_name: &str, field: &str, base: &Path, bad: &mut Report<'_>) -> Option<CheckKind> {
    let f = |k: &str| format!("{field}.{k}");
    let Some(u) = &raw.url else {
        bad(
            raw.kind.span(),
            format!("{field}: an {kind_name} check needs a url"),
            Some(&format!("add url = \"{kind_name}://192.0.2.10/healthz\"")),
        );
        return None;
    };
    let url = match reqwest::Url::parse(u.get_ref()) {
        Ok(url) if url.scheme() != kind_name => {
            bad(
                u.span(),
                format!("{}: scheme {:?} does not match type = {kind_name:?}", f("url"), url.scheme()),
                Some(&format!("write {kind_name}://... or change the type")),
            );
            None
        }
        Ok(url) if url.host().is_none() => {
            bad(u.span(), format!("{}: {:?} has no host", f("url"), u.get_ref()), None);
            None
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            bad(
                u.span(),
                format!("{}: credentials in the url are not supported", f("url")),
                Some("send them with headers = { Authorization = \"...\" }"),
            );
            None
        }
        Ok(url) => Some(url),
        Err(e) => {
            bad(
                u.span(),
                format!("{}: {:?} is not a url: {e}", f("url"), u.get_ref()),
                Some(&format!("write e.g. \"{kind_name}://192.0.2.10:8080/healthz\"")),
            );
            None
        }
    };
    let method = match raw.method.as_ref().map(|m| (m, m.get_ref().to_ascii_uppercase())) {
        None => HttpMethod::Get,
        Some((_, m)) if m == "GET" => HttpMethod::Get,
        Some((_, m)) if m == "HEAD" => HttpMethod::Head,
        Some((m, _)) => {
            bad(m.span(), format!("{}: {:?} is not GET or HEAD", f("method"), m.get_ref()), None);
            HttpMethod::Get
        }
    };
    let mut expect_status = Vec::new();
    if let Some(list) = &raw.expect_status {
        if list.get_ref().is_empty() {
            bad(list.span(), format!("{}: is empty: no answer could pass", f("expect_status")), None);
        }
        for item in list.get_ref() {
            let range = match item.get_ref() {
                toml::Value::Integer(n) => u16::try_from(*n).ok().map(|n| n..=n),
                toml::Value::String(s) => match s.split_once('-') {
                    Some((a, b)) => match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                        (Ok(a), Ok(b)) if a <= b => Some(a..=b),
                        _ => None,
                    },
                    None => s.trim().parse::<u16>().ok().map(|n| n..=n),
                },
                _ => None,
            };
            match range {
                Some(r) if (100..=599).contains(r.start()) && (100..=599).contains(r.end()) => expect_status.push(r),
                _ => bad(
                    item.span(),
                    format!("{}: {} is not a status code or range", f("expect_status"), item.get_ref()),
                    Some("write codes 100-599 as numbers or ranges, e.g. [200, 204] or [\"200-299\"]"),
                ),
            }
        }
    } else {
        expect_status.push(200..=399);
    }
    let body_contains = raw.body_contains.as_ref().and_then(|b| {
        if b.get_ref().is_empty() || b.get_ref().len() > BODY_LIMIT {
            bad(
                b.span(),
                format!("{}: must be 1 to {BODY_LIMIT} bytes", f("body_contains")),
                Some(&format!("only the first {BODY_LIMIT} bytes of the body are read")),
            );
            return None;
        }
        if method == HttpMethod::Head {
            bad(b.span(), format!("{}: a HEAD answer has no body", f("body_contains")), Some("use method = \"GET\""));
        }
        Some(b.get_ref().clone())
    });
    let host_header = raw.host_header.as_ref().and_then(|h| {
        let valid = reqwest::header::HeaderValue::from_str(h.get_ref()).is_ok() && !h.get_ref().is_empty();
        if !valid {
            bad(h.span(), format!("{}: {:?} is not a valid Host", f("host_header"), h.get_ref()), None);
        }
        valid.then(|| h.get_ref().clone())
    });
    let mut headers = Vec::new();
    for (k, v) in raw.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(k.get_ref().as_bytes()).is_err() {
            bad(k.span(), format!("{}: {:?} is not a header name", f("headers"), k.get_ref()), None);
        } else if k.get_ref().eq_ignore_ascii_case("host") {
            bad(k.span(), format!("{}: set Host with host_header", f("headers")), Some("write host_header = \"...\""));
        } else if reqwest::header::HeaderValue::from_str(v.get_ref()).is_err() {
            bad(v.span(), format!("{}: {:?} is not a valid header value", f("headers"), v.get_ref()), None);
        } else {
            headers.push((k.get_ref().clone(), v.get_ref().clone()));
        }
    }
    let tls_server_name = raw.tls_server_name.as_ref().and_then(|s| {
        let valid = rustls::pki_types::ServerName::try_from(s.get_ref().as_str()).is_ok();
        if !valid {
            bad(
                s.span(),
                format!("{}: {:?} is not a DNS name", f("tls_server_name"), s.get_ref()),
                Some("the name the certificate is for, e.g. \"www.example.com\""),
            );
        }
        valid.then(|| s.get_ref().clone())
    });
    // Without tls_server_name an HTTPS probe takes its server name from host_header, so that
    // must be one (or an address, which has no SNI and is not checked by name).
    if let (Some(h), None, "https") = (&raw.host_header, &raw.tls_server_name, kind_name) {
        let host = host_part(h.get_ref());
        if host_header.is_some() && rustls::pki_types::ServerName::try_from(host).is_err() {
            bad(
                h.span(),
                format!("{}: {host:?} cannot be the TLS server name of this https check", f("host_header")),
                Some("set tls_server_name = \"...\" to the name the certificate is for"),
            );
        }
    }
    let tls_insecure = raw.tls_insecure.as_ref().is_some_and(|b| *b.get_ref());
    let mut tls_ca = Vec::new();
    let mut tls_ca_file = None;
    if let Some(c) = &raw.tls_ca_file {
        let path = base.join(c.get_ref());
        match std::fs::read(&path) {
            Err(e) => bad(
                c.span(),
                format!("{}: cannot read {}: {e}", f("tls_ca_file"), path.display()),
                Some("a path relative to the config file's directory"),
            ),
            Ok(pem) => {
                let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
                match certs {
                    Ok(certs) if !certs.is_empty() => tls_ca = certs,
                    Ok(_) => bad(
                        c.span(),
                        format!("{}: {} holds no certificate", f("tls_ca_file"), path.display()),
                        Some("a PEM file with -----BEGIN CERTIFICATE----- blocks"),
                    ),
                    Err(e) => bad(
                        c.span(),
                        format!("{}: {} is not PEM: {e:?}", f("tls_ca_file"), path.display()),
                        Some("a PEM file with -----BEGIN CERTIFICATE----- blocks"),
                    ),
                }
                tls_ca_file = Some(path);
            }
        }
        if tls_insecure {
            bad(
                c.span(),
                format!(
                    "{}: tls_insecure = true trusts every certificate; a CA file would be ignored",
                    f("tls_ca_file")
                ),
                Some("keep one of the two"),
            );
        }
    }
    Some(CheckKind::Http(Box::new(HttpCheck {
        url: url?,
        method,
        expect_status,
        body_contains,
        host_header,
        headers,
        tls_server_name,
        tls_ca,
        tls_ca_file,
        tls_insecure,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const FILE: &str = "/etc/gslbd/gslbd.toml";
    const REGION: &str = "[regions.fra]\naddresses = [\"192.0.2.10\"]\n";

    fn ok(text: &str) -> crate::config::Config {
        parse(&format!("{REGION}{text}"), Path::new(FILE)).unwrap()
    }

    /// Errors for `REGION + text`: line 3 is the first line of `text`.
    fn errs(text: &str) -> Vec<String> {
        parse(&format!("{REGION}{text}"), Path::new(FILE)).unwrap_err().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let c = ok("[regions.fra.check]\ntype = \"http\"\nurl = \"http://192.0.2.10/healthz\"\n");
        let r = &c.gslb.regions[0];
        assert_eq!((r.checks.len(), r.quorum), (1, None));
        let check = &r.checks[0];
        assert_eq!((check.interval, check.timeout, check.rise, check.fall), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 2, 3));
        let CheckKind::Http(h) = &check.kind else { panic!("not http: {check:?}") };
        assert_eq!(h.method, HttpMethod::Get);
        assert!(h.is_expected(200) && h.is_expected(399) && !h.is_expected(400) && !h.is_expected(503));
        assert_eq!(c.gslb.health, HealthConfig { unknown_is_up: true, history: 10 });
        assert!(ok("").gslb.regions[0].checks.is_empty(), "no checks unless configured");
    }

    #[test]
    fn several_checks_with_quorum_and_every_field() {
        let c = ok("quorum = 2\n\
             [[regions.fra.checks]]\ntype = \"https\"\nurl = \"https://10.0.0.1:8443/h\"\nmethod = \"head\"\n\
             expect_status = [200, \"300-302\"]\nhost_header = \"www.example.com\"\nheaders = { X-Probe = \"1\" }\n\
             tls_server_name = \"www.example.com\"\ntls_insecure = true\ninterval = \"500ms\"\nrise = 1\nfall = 5\n\
             [[regions.fra.checks]]\ntype = \"tcp\"\naddress = \"10.0.0.1:443\"\ntimeout = \"300ms\"\n\
             [[regions.fra.checks]]\ntype = \"http\"\nurl = \"http://10.0.0.1/\"\nbody_contains = \"OK\"\n\
             [health]\nunknown = \"down\"\nhistory = 3\n");
        let r = &c.gslb.regions[0];
        assert_eq!((r.checks.len(), r.quorum), (3, Some(2)));
        let CheckKind::Http(h) = &r.checks[0].kind else { panic!() };
        assert_eq!(h.method, HttpMethod::Head);
        assert_eq!(h.expect_status, vec![200..=200, 300..=302]);
        assert_eq!(h.headers, vec![("X-Probe".to_string(), "1".to_string())]);
        assert!(h.is_https() && h.tls_insecure);
        assert_eq!(h.tls_server_name.as_deref(), Some("www.example.com"));
        // An explicit interval below 2 s lowers the default timeout to half of it.
        assert_eq!(
            (r.checks[0].interval, r.checks[0].timeout),
            (Duration::from_millis(500), Duration::from_millis(250))
        );
        assert_eq!((r.checks[0].rise, r.checks[0].fall), (1, 5));
        assert_eq!(r.checks[1].kind, CheckKind::Tcp { address: "10.0.0.1:443".into() });
        assert_eq!(r.checks[1].timeout, Duration::from_millis(300));
        assert_eq!(c.gslb.health, HealthConfig { unknown_is_up: false, history: 3 });
    }

    #[test]
    fn errors_name_line_column_and_hint() {
        let e = errs(
            "[regions.fra.check]\ntype = \"http\"\nurl = \"https://192.0.2.10/\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
             rise = 0\nfall = 101\ntls_insecure = true\n",
        );
        let want = [
            "/etc/gslbd/gslbd.toml:5:7: error: regions.fra.check.url: scheme \"https\" does not match type = \"http\"\n  hint: write http://... or change the type",
            "/etc/gslbd/gslbd.toml:7:11: error: regions.fra.check.timeout: 1s is not shorter than the interval (1s)\n  hint: a probe must finish before the next one starts: make timeout < interval",
            "/etc/gslbd/gslbd.toml:8:8: error: regions.fra.check.rise: 0 is out of range\n  hint: use 1 to 100 consecutive probes",
            "/etc/gslbd/gslbd.toml:9:8: error: regions.fra.check.fall: 101 is out of range\n  hint: use 1 to 100 consecutive probes",
            "/etc/gslbd/gslbd.toml:10:16: error: regions.fra.check.tls_insecure: tls_insecure is for https checks\n  hint: use type = \"https\" with an https:// url",
        ];
        assert_eq!(e, want);
    }

    /// Each error starts with its `want` prefix, in file order.
    fn assert_prefixes(errors: &[String], want: &[&str]) {
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (e, w) in errors.iter().zip(want) {
            assert!(e.starts_with(&format!("{FILE}:{w}")), "want {w:?}, got {e:?}");
        }
    }

    #[test]
    fn tcp_and_kind_mismatches() {
        let e = errs(
            "[[regions.fra.checks]]\ntype = \"tcp\"\naddress = \"10.0.0.1\"\nurl = \"http://x/\"\n\
             [[regions.fra.checks]]\ntype = \"icmp\"\n[[regions.fra.checks]]\ntype = \"https\"\n",
        );
        assert_prefixes(
            &e,
            &[
                "5:11: error: regions.fra.checks[0].address: \"10.0.0.1\" is not host:port",
                "6:7: error: regions.fra.checks[0].url: tcp checks only connect",
                "8:8: error: regions.fra.checks[1].type: \"icmp\" is not a check type",
                "10:8: error: regions.fra.checks[2]: an https check needs a url",
            ],
        );
    }

    #[test]
    fn quorum_must_fit_the_checks() {
        let e = errs("quorum = 3\n[[regions.fra.checks]]\ntype = \"tcp\"\naddress = \"10.0.0.1:80\"\n");
        assert_eq!(
            e,
            [format!(
                "{FILE}:3:10: error: regions.fra.quorum: 3 is out of range\n  hint: use 1 to 1 (the number of checks)"
            )]
        );
        let e = errs("quorum = 1\n");
        assert!(
            e[0].starts_with(&format!("{FILE}:3:10: error: regions.fra.quorum is set but the region has no checks")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let e = errs("[regions.fra.check]\ntype = \"tcp\"\naddress = \"10.0.0.1:80\"\nintervall = \"2s\"\n");
        assert_prefixes(&e, &["6:1: error: unknown field `intervall`"]);
        let e = errs(
            "[regions.fra.check]\ntype = \"http\"\nurl = \"http://x/\"\nexpect_status = [\"399-200\", 700, true]\n\
             headers = { \"bad name\" = \"1\" }\nmethod = \"POST\"\n[health]\nunknown = \"maybe\"\n",
        );
        assert_prefixes(
            &e,
            &[
                "6:18: error: regions.fra.check.expect_status: \"399-200\" is not a status code or range",
                "6:29: error: regions.fra.check.expect_status: 700 is not",
                "6:34: error: regions.fra.check.expect_status: true is not",
                "7:13: error: regions.fra.check.headers: \"bad name\" is not a header name",
                "8:10: error: regions.fra.check.method: \"POST\" is not GET or HEAD",
                "10:11: error: health.unknown: \"maybe\" is not a choice",
            ],
        );
    }

    #[test]
    fn window_rule_is_validated() {
        let tcp = "[regions.fra.check]\ntype = \"tcp\"\naddress = \"10.0.0.1:80\"\n";
        let c = ok(&format!("{tcp}window = 6\nwindow_failures = 3\n"));
        assert_eq!(c.gslb.regions[0].checks[0].window, Some(Window { size: 6, failures: 3 }));
        assert_eq!(ok(tcp).gslb.regions[0].checks[0].window, None, "no window unless configured");
        let c = ok(&format!("{tcp}window = 20\nwindow_failures = 20\n[health]\nhistory = 20\n"));
        assert_eq!(c.gslb.regions[0].checks[0].window, Some(Window { size: 20, failures: 20 }));
        // (keys after the check's type and address, the error: line 6 is the first key)
        let cases = [
            (
                "window = 3\nwindow_failures = 4\n",
                "7:19: error: regions.fra.check.window_failures: 4 is out of range for window = 3\n  \
                 hint: use 1 to 3: how many of the last 3 probes must fail",
            ),
            ("window = 3\nwindow_failures = 0\n", "7:19: error: regions.fra.check.window_failures: 0 is out of range"),
            (
                "window = 11\nwindow_failures = 4\n",
                "6:10: error: regions.fra.check.window: 11 is out of range\n  \
                 hint: use 2 to 10 ([health] history; raise it for a longer window)",
            ),
            ("window = 1\nwindow_failures = 1\n", "6:10: error: regions.fra.check.window: 1 is out of range"),
            ("window = 4\n", "6:10: error: regions.fra.check.window: is set without window_failures\n  hint: add"),
            ("window_failures = 2\n", "6:19: error: regions.fra.check.window_failures: is set without window\n"),
        ];
        for (keys, want) in cases {
            assert_prefixes(&errs(&format!("{tcp}{keys}")), &[want]);
        }
    }

    #[test]
    fn an_https_host_header_must_be_able_to_name_the_server() {
        let https = "[regions.fra.check]\ntype = \"https\"\nurl = \"https://10.0.0.1/\"\n";
        for ok_host in ["www.example.test", "www.example.test:8443", "10.0.0.2", "[2001:db8::1]:443"] {
            ok(&format!("{https}host_header = \"{ok_host}\"\n"));
        }
        let e = errs(&format!("{https}host_header = \"bad host\"\n"));
        assert_eq!(
            e,
            [format!(
                "{FILE}:6:15: error: regions.fra.check.host_header: \"bad host\" cannot be the TLS server name of \
                 this https check\n  hint: set tls_server_name = \"...\" to the name the certificate is for"
            )]
        );
        // With tls_server_name, or on plain http, Host is only a header.
        ok(&format!("{https}host_header = \"bad host\"\ntls_server_name = \"www.example.test\"\n"));
        ok("[regions.fra.check]\ntype = \"http\"\nurl = \"http://10.0.0.1/\"\nhost_header = \"bad host\"\n");
    }

    #[test]
    fn ca_file_is_read_relative_to_the_config() {
        let e = errs("[regions.fra.check]\ntype = \"https\"\nurl = \"https://x/\"\ntls_ca_file = \"no-such-ca.pem\"\n");
        assert!(
            e[0].starts_with(&format!(
                "{FILE}:6:15: error: regions.fra.check.tls_ca_file: cannot read /etc/gslbd/no-such-ca.pem"
            )),
            "{e:?}"
        );
    }
}
