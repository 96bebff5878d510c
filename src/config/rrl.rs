//! `[dns.rrl]`: response rate limiting, validated into an [`RrlConfig`]. Absent: off.
//!
//! Keys are named after BIND 9's `rate-limit` options (`responses-per-second`, `window`,
//! `slip`, `ipv4-prefix-length`, ...), with BIND's defaults where BIND has one, so an
//! operator who knows BIND, Knot (`rrl`) or NSD (`rrl-*`) reads them without a manual:
//!
//! | key                    | default | source                                           |
//! |------------------------|---------|--------------------------------------------------|
//! | `responses_per_second` | 20      | Knot's `rate-limit` default (BIND has none)      |
//! | `errors_per_second`    | 5       | lower than responses: errors are what floods ask |
//! | `window`               | 15s     | BIND `window`                                    |
//! | `slip`                 | 2       | BIND and NSD `slip`                              |
//! | `ipv4_prefix_length`   | 24      | BIND, NSD                                        |
//! | `ipv6_prefix_length`   | 56      | BIND                                             |
//! | `table_size`           | 65536   | entries per UDP worker, 32 bytes each: 2 MiB     |
//! | `exempt`               | []      | BIND `exempt-clients`                            |
//! | `log_only`             | false   | BIND `log-only`                                  |

use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::gslb::Report;
use super::{in_range, parse_duration, parse_net};

/// Default `responses_per_second` per client prefix (Knot's `rate-limit` default).
pub const DEFAULT_RESPONSES_PER_SECOND: u32 = 20;
/// Default `errors_per_second` per client prefix (NXDOMAIN, REFUSED, FORMERR).
pub const DEFAULT_ERRORS_PER_SECOND: u32 = 5;
/// Default `window`: the rate that counts is averaged over it; a prefix that kept flooding
/// waits up to this long before it is answered again (BIND `window`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15);
/// Default `slip`: every 2nd limited response is sent empty with TC=1, the others dropped
/// (BIND, NSD).
pub const DEFAULT_SLIP: u8 = 2;
/// Default IPv4 prefix length in bits clients are grouped by (BIND, NSD).
pub const DEFAULT_IPV4_PREFIX_LENGTH: u8 = 24;
/// Default IPv6 prefix length in bits clients are grouped by (BIND).
pub const DEFAULT_IPV6_PREFIX_LENGTH: u8 = 56;
/// Default entries per UDP worker's table (32 bytes each: 2 MiB).
pub const DEFAULT_TABLE_SIZE: usize = 65_536;
/// Fewer entries than this would evict active prefixes under ordinary load.
pub const MIN_TABLE_SIZE: usize = 1024;
/// 2^24 entries × 32 bytes = 512 MiB per worker: more is a typo.
pub const MAX_TABLE_SIZE: usize = 1 << 24;
/// BIND's upper bound for `window` (seconds).
pub const MAX_WINDOW_SECS: u64 = 3600;

/// Response rate limiting on UDP, per client prefix (see `frontend::rrl` for the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second a client prefix may get (NOERROR answers, referrals, NODATA).
    pub responses_per_second: u32,
    /// Error responses (NXDOMAIN, REFUSED, FORMERR) per second a client prefix may get,
    /// counted apart from the other responses.
    pub errors_per_second: u32,
    /// The span over which a prefix's rate is averaged, whole seconds (1 to 3600).
    pub window: Duration,
    /// Every `slip`th limited response goes out empty with TC=1 (0: drop all, 1: truncate all).
    pub slip: u8,
    /// IPv4 clients are limited per prefix of this length (bits).
    pub ipv4_prefix_length: u8,
    /// IPv6 clients are limited per prefix of this length (bits, at most 64).
    pub ipv6_prefix_length: u8,
    /// Client prefixes never limited.
    pub exempt: Vec<IpNet>,
    /// Decide and count, but limit nothing.
    pub log_only: bool,
    /// Entries in each UDP worker's table (32 bytes each), fixed at start.
    pub table_size: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            responses_per_second: DEFAULT_RESPONSES_PER_SECOND,
            errors_per_second: DEFAULT_ERRORS_PER_SECOND,
            window: DEFAULT_WINDOW,
            slip: DEFAULT_SLIP,
            ipv4_prefix_length: DEFAULT_IPV4_PREFIX_LENGTH,
            ipv6_prefix_length: DEFAULT_IPV6_PREFIX_LENGTH,
            exempt: Vec::new(),
            log_only: false,
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRrl {
    responses_per_second: Option<Spanned<i64>>,
    errors_per_second: Option<Spanned<i64>>,
    window: Option<Spanned<String>>,
    slip: Option<Spanned<i64>>,
    ipv4_prefix_length: Option<Spanned<i64>>,
    ipv6_prefix_length: Option<Spanned<i64>>,
    exempt: Option<Vec<Spanned<String>>>,
    log_only: Option<bool>,
    table_size: Option<Spanned<i64>>,
}

/// Validates `[dns.rrl]`, reporting every bad value at its place.
pub(super) fn validate(raw: RawRrl, report: &mut Report<'_>) -> RrlConfig {
    let mut c = RrlConfig::default();
    let off = "to turn rate limiting off remove [dns.rrl]; to watch it without limiting set log_only = true";
    let rate = |v: &Spanned<i64>, f: &str, report: &mut Report<'_>| {
        if *v.get_ref() == 0 {
            report(v.span(), format!("dns.rrl.{f}: 0 would answer nothing"), Some(off));
            return None;
        }
        in_range(v, 1..=1_000_000, &format!("dns.rrl.{f}"), "use 1 to 1000000 responses per second", report)
            .map(|n| n as u32)
    };
    if let Some(n) = raw.responses_per_second.as_ref().and_then(|v| rate(v, "responses_per_second", report)) {
        c.responses_per_second = n;
        // An explicit low rate also lowers the default for errors.
        c.errors_per_second = c.errors_per_second.min(n);
    }
    if let Some(n) = raw.errors_per_second.as_ref().and_then(|v| rate(v, "errors_per_second", report)) {
        c.errors_per_second = n;
    }
    if let Some(w) = raw.window {
        match parse_duration(w.get_ref()) {
            Some(d) if d.subsec_nanos() == 0 && (1..=MAX_WINDOW_SECS).contains(&d.as_secs()) => c.window = d,
            Some(_) => report(
                w.span(),
                format!("dns.rrl.window: {:?} is out of range", w.get_ref()),
                Some("use whole seconds from \"1s\" to \"1h\"; BIND's default is \"15s\""),
            ),
            None => report(
                w.span(),
                format!("dns.rrl.window: {:?} is not a duration", w.get_ref()),
                Some("write e.g. \"15s\" or \"1m\""),
            ),
        }
    }
    if let Some(n) = raw.slip.as_ref().and_then(|v| {
        in_range(v, 0..=10, "dns.rrl.slip", "use 0 (drop every limited response) to 10; 2 is BIND's default", report)
    }) {
        c.slip = n as u8;
    }
    if let Some(n) = raw
        .ipv4_prefix_length
        .as_ref()
        .and_then(|v| in_range(v, 1..=32, "dns.rrl.ipv4_prefix_length", "use 1 to 32; 24 is BIND's default", report))
    {
        c.ipv4_prefix_length = n as u8;
    }
    if let Some(n) = raw.ipv6_prefix_length.as_ref().and_then(|v| {
        in_range(
            v,
            1..=64,
            "dns.rrl.ipv6_prefix_length",
            "use 1 to 64 (a /64 is one subnet: one host may use all of it); 56 is BIND's default",
            report,
        )
    }) {
        c.ipv6_prefix_length = n as u8;
    }
    if let Some(list) = raw.exempt {
        for item in list {
            match parse_net(item.get_ref()) {
                Some(n) => c.exempt.push(n.trunc()),
                None => report(
                    item.span(),
                    format!("dns.rrl.exempt: {:?} is not an address or CIDR prefix", item.get_ref()),
                    Some("write e.g. \"192.0.2.0/24\" or \"2001:db8::/48\""),
                ),
            }
        }
    }
    c.log_only = raw.log_only.unwrap_or(false);
    if let Some(v) = raw.table_size {
        let n = *v.get_ref();
        let span: Range<usize> = v.span();
        if (MIN_TABLE_SIZE as i64..=MAX_TABLE_SIZE as i64).contains(&n) {
            c.table_size = n as usize;
        } else {
            let why = if n < MIN_TABLE_SIZE as i64 { "too small" } else { "too large" };
            report(
                span,
                format!("dns.rrl.table_size: {n} is {why}"),
                Some(&format!(
                    "use {MIN_TABLE_SIZE} to {MAX_TABLE_SIZE} entries per UDP worker (32 bytes each); at least the \
                     client prefixes one worker sees in a window; default {DEFAULT_TABLE_SIZE}"
                )),
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    fn rrl(body: &str) -> Result<Option<RrlConfig>, Vec<String>> {
        parse(&format!("[dns.rrl]\n{body}"), Path::new("/etc/gslbd/gslbd.toml"))
            .map(|c| c.dns.rrl)
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn absent_is_off_and_empty_table_takes_the_defaults() {
        assert_eq!(parse("", Path::new("/g.toml")).unwrap().dns.rrl, None);
        assert_eq!(rrl("").unwrap(), Some(RrlConfig::default()));
        let c = rrl("responses_per_second = 3\nwindow = \"1m\"\nslip = 0\nexempt = [\"10.1.2.3/8\", \"::1\"]\nlog_only = true\ntable_size = 1024\n")
            .unwrap()
            .unwrap();
        assert_eq!((c.responses_per_second, c.errors_per_second), (3, 3), "a lower rate lowers errors' default");
        assert_eq!((c.window, c.slip, c.log_only, c.table_size), (Duration::from_secs(60), 0, true, 1024));
        assert_eq!(c.exempt, ["10.0.0.0/8".parse::<IpNet>().unwrap(), "::1/128".parse().unwrap()]);
    }

    #[test]
    fn bad_values_are_reported_at_their_place_with_a_hint() {
        // (setting, expected error, expected hint)
        let cases = [
            (
                "responses_per_second = 0",
                "2:24: error: dns.rrl.responses_per_second: 0 would answer nothing",
                "log_only",
            ),
            ("errors_per_second = -1", "2:21: error: dns.rrl.errors_per_second: -1 is out of range", "1 to 1000000"),
            ("slip = 11", "2:8: error: dns.rrl.slip: 11 is out of range", "0 (drop every"),
            ("ipv4_prefix_length = 33", "2:22: error: dns.rrl.ipv4_prefix_length: 33 is out of range", "1 to 32"),
            ("ipv4_prefix_length = 0", "2:22: error: dns.rrl.ipv4_prefix_length: 0 is out of range", "1 to 32"),
            ("ipv6_prefix_length = 96", "2:22: error: dns.rrl.ipv6_prefix_length: 96 is out of range", "1 to 64"),
            ("table_size = 100", "2:14: error: dns.rrl.table_size: 100 is too small", "1024 to"),
            ("window = \"500ms\"", "2:10: error: dns.rrl.window: \"500ms\" is out of range", "whole seconds"),
            ("window = \"soon\"", "2:10: error: dns.rrl.window: \"soon\" is not a duration", "\"15s\""),
            ("exempt = [\"10.0.0.0/33\"]", "2:11: error: dns.rrl.exempt: \"10.0.0.0/33\"", "CIDR"),
            ("rate = 5", "2:1: error: unknown field `rate`", "README.md"),
        ];
        for (setting, error, hint) in cases {
            let e = rrl(setting).unwrap_err();
            assert_eq!(e.len(), 1, "{setting}: {e:?}");
            assert!(e[0].starts_with(&format!("/etc/gslbd/gslbd.toml:{error}")), "{setting}: {}", e[0]);
            assert!(e[0].contains("\n  hint: ") && e[0].contains(hint), "{setting}: {}", e[0]);
        }
    }
}
