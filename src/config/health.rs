//! `[health]` and the health checks of a region (`[regions.NAME.check]` or
//! `[[regions.NAME.checks]]` with `quorum`), validated into plain values the prober runs.
//!
//! This file reads what every check has (`type` and the timing below) and which keys a
//! check may have; the rest of the table goes to the kind its `type` names, which owns its
//! keys, their validation and their defaults (`health::probe::{http, tcp}`).
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

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::gslb::Report;
use super::{in_range, parse_duration};
pub use crate::health::check::{CheckConfig, Window};
use crate::health::probe::{self, COMMON_KEYS, KINDS};

/// Default time between two probes of one check.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default time a probe may take before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default consecutive passes that make a check healthy.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures that make a check unhealthy.
pub const DEFAULT_FALL: u32 = 3;
/// Default number of probe results kept per region for the admin API (`[health] history`).
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    unknown: Option<Spanned<String>>,
    history: Option<Spanned<i64>>,
}

/// The keys every check has; the rest of its table belongs to its kind
/// ([`crate::health::probe::KINDS`]), which reads it itself.
#[derive(Debug, Deserialize)]
struct RawCommon {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    window: Option<Spanned<i64>>,
    window_failures: Option<Spanned<i64>>,
}

/// The table of a region's check in the parsed document: `regions.NAME.check`
/// (`index` None) or `regions.NAME.checks[index]`.
pub(super) fn check_table<'a, 'i>(
    doc: &'a Spanned<DeValue<'i>>,
    region: &str,
    index: Option<usize>,
) -> Option<&'a Spanned<DeValue<'i>>> {
    let r = doc.get_ref().get("regions")?.get_ref().get(region)?.get_ref();
    match index {
        None => r.get("check"),
        Some(i) => r.get("checks")?.get_ref().get(i),
    }
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

/// Validates one check table: its type, the keys every check has, which keys it may
/// have; the rest goes to the kind its `type` names. `field` names it in errors
/// (`regions.fra.checks[1]`), `base` anchors relative paths, `history` (`[health] history`)
/// bounds `window`.
pub(super) fn check(
    table: &Spanned<DeValue<'_>>,
    field: &str,
    base: &Path,
    history: usize,
    report: &mut Report<'_>,
) -> Option<CheckConfig> {
    let raw: RawCommon = probe::deserialize(table, report)?;
    let f = |k: &str| format!("{field}.{k}");
    let type_name = raw.kind.get_ref().as_str();
    let Some(kind) = probe::kind(type_name) else {
        report(
            raw.kind.span(),
            format!("{}: {type_name:?} is not a check type", f("type")),
            Some(&format!("use {}", probe::type_list())),
        );
        return None;
    };
    let mut ok = true;
    let mut bad = |span: std::ops::Range<usize>, message: String, hint: Option<&str>| {
        ok = false;
        report(span, message, hint);
    };
    // Keys of another kind are mistakes, not silently ignored; keys of none are typos.
    for (key, value) in table.get_ref().as_table().into_iter().flatten() {
        let k: &str = key.get_ref().as_ref();
        if COMMON_KEYS.contains(&k) || kind.keys.contains(&k) {
            continue;
        }
        if KINDS.iter().any(|other| other.keys.contains(&k)) {
            let (message, hint) = (kind.foreign_key)(type_name, k);
            bad(value.span(), format!("{}: {message}", f(k)), Some(&hint));
        } else {
            let known: Vec<String> =
                COMMON_KEYS.iter().chain(KINDS.iter().flat_map(|o| o.keys)).map(|k| format!("`{k}`")).collect();
            bad(
                key.span(),
                format!("unknown field `{k}`, expected one of {}", known.join(", ")),
                Some("see README.md, section Configuration, for every key"),
            );
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

    let table = probe::Table { type_name, type_span: raw.kind.span(), field, base, value: table };
    let kind = (kind.parse)(&table, &mut bad);
    let kind = kind?;
    ok.then_some(CheckConfig { kind, interval, timeout, rise, fall, window })
}

/// `window` and `window_failures`: both or neither; 2 <= window <= history (the results
/// kept are the ones the admin API shows, so the operator can see what the rule saw);
/// 1 <= window_failures <= window.
fn window(raw: &RawCommon, field: &str, history: usize, bad: &mut Report<'_>) -> Option<Window> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::health::probe::http::{Http, HttpMethod};
    use crate::health::probe::tcp::Tcp;

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
        let Http(h) = check.kind.downcast_ref::<Http>().expect("http");
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
        let Http(h) = r.checks[0].kind.downcast_ref::<Http>().expect("http");
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
        assert_eq!(r.checks[1].kind.downcast_ref::<Tcp>(), Some(&Tcp { address: "10.0.0.1:443".into() }));
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
    fn a_value_of_the_wrong_type_does_not_hide_the_other_checks_errors() {
        let e = errs(
            "[[regions.fra.checks]]\ntype = \"tcp\"\naddress = \"10.0.0.1:80\"\nrise = \"two\"\n\
             [[regions.fra.checks]]\ntype = \"tcp\"\naddress = \"10.0.0.1:80\"\nheaders = { X = \"1\" }\n\
             [[regions.fra.checks]]\ntype = \"http\"\nurl = \"http://x/\"\naddress = \"1.2.3.4:80\"\n\
             expect_status = \"200\"\n[[regions.fra.checks]]\nurl = \"http://x/\"\n",
        );
        assert_prefixes(
            &e,
            &[
                "6:8: error: invalid type: string \"two\", expected i64",
                "10:11: error: regions.fra.checks[1].headers: tcp checks only connect; headers is for http and https checks\n  hint: remove it, or use type = \"http\"",
                "14:11: error: regions.fra.checks[2].address: http checks take a url, not an address\n  hint: write url = \"http://192.0.2.10/healthz\"",
                "15:17: error: invalid type: string \"200\", expected a sequence",
                "16:1: error: missing field `type`",
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
