//! `[[notify]]`: webhook targets for health, mode and override changes (see `notify`).
//!
//! ```toml
//! [[notify]]
//! url = "https://hooks.example.net/gslbd"   # http or https
//! secret_file = "notify.secret"              # the HMAC-SHA256 key, relative to the config
//! events = ["health", "mode", "override"]    # default: all three
//! timeout = "5s"                             # per attempt (default 5s)
//! retries = 5                                # after the first failure (default 5)
//! queue = 1000                               # changes waiting at most; more are dropped
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::gslb::Report;
use super::{in_range, parse_duration};

/// The event kinds a target may ask for.
pub const EVENT_KINDS: [&str; 3] = ["health", "mode", "override"];

/// One webhook target, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Where to POST (http or https).
    pub url: String,
    /// The shared secret the body is signed with (the file's content, trailing newline
    /// removed).
    pub secret: Vec<u8>,
    /// Event kinds to send; empty: all.
    pub events: Vec<String>,
    /// How long one attempt may take (default 5 s).
    pub timeout: Duration,
    /// Attempts after the first failure, each waiting twice as long as the one before from
    /// 500 ms, at most 30 s (default 5).
    pub retries: u32,
    /// Changes waiting for this target at most; more are dropped and counted (default 1000).
    pub queue: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    url: Spanned<String>,
    secret_file: Spanned<String>,
    events: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
    retries: Option<Spanned<i64>>,
    queue: Option<Spanned<i64>>,
}

pub(super) fn validate(raw: RawNotify, i: usize, base: &Path, report: &mut Report<'_>) -> Option<NotifyConfig> {
    let field = |f: &str| format!("notify[{i}].{f}");
    let mut ok = true;
    let url = raw.url.get_ref().clone();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len() {
        report(
            raw.url.span(),
            format!("{}: {url:?} is not an http or https URL", field("url")),
            Some("e.g. \"https://hooks.example.net/gslbd\""),
        );
        ok = false;
    }
    let path = base.join(raw.secret_file.get_ref());
    let secret = match std::fs::read(&path) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            if bytes.is_empty() {
                report(
                    raw.secret_file.span(),
                    format!("{}: {} is empty", field("secret_file"), path.display()),
                    Some("put the shared secret in it (e.g. openssl rand -hex 32)"),
                );
                ok = false;
            }
            bytes
        }
        Err(e) => {
            report(
                raw.secret_file.span(),
                format!("{}: cannot read {}: {e}", field("secret_file"), path.display()),
                Some("a file with the shared secret, relative to the config file"),
            );
            ok = false;
            Vec::new()
        }
    };
    let mut events = Vec::new();
    for e in raw.events.iter().flatten() {
        if EVENT_KINDS.contains(&e.get_ref().as_str()) {
            events.push(e.get_ref().clone());
        } else {
            report(
                e.span(),
                format!("{}: {:?} is not an event kind", field("events"), e.get_ref()),
                Some("use \"health\", \"mode\" or \"override\""),
            );
            ok = false;
        }
    }
    let mut timeout = Duration::from_secs(5);
    if let Some(t) = &raw.timeout {
        match parse_duration(t.get_ref()) {
            Some(d) if !d.is_zero() && d <= Duration::from_secs(60) => timeout = d,
            _ => {
                report(
                    t.span(),
                    format!("{}: {:?} is not a duration from 1ms to 60s", field("timeout"), t.get_ref()),
                    Some("write e.g. \"5s\""),
                );
                ok = false;
            }
        }
    }
    let mut retries = 5;
    if let Some(r) = &raw.retries {
        match in_range(r, 0..=20, &field("retries"), "use 0 to 20", report) {
            Some(n) => retries = n as u32,
            None => ok = false,
        }
    }
    let mut queue = 1000;
    if let Some(q) = &raw.queue {
        match in_range(q, 1..=1_000_000, &field("queue"), "use 1 to 1000000", report) {
            Some(n) => queue = n as usize,
            None => ok = false,
        }
    }
    ok.then_some(NotifyConfig { url, secret, events, timeout, retries, queue })
}
