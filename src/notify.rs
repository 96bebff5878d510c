//! `[[notify]]` webhooks: every health, mode and override change ([`crate::events`]) is
//! POSTed as JSON to each configured URL, signed with HMAC-SHA256 over the body with a
//! shared secret, in order, retried with exponential backoff.
//!
//! Nothing here can slow DNS or the prober: changes reach a target through a bounded queue
//! that the publisher fills with `try_send` (a change that does not fit is dropped and
//! counted), and each target is served by a task of its own, so a receiver that hangs only
//! delays its own later notifications.
//!
//! The request, as a receiver sees it:
//!
//! ```text
//! POST /hook HTTP/1.1
//! Content-Type: application/json
//! User-Agent: gslbd/0.1.0
//! X-Gslbd-Event: health
//! X-Gslbd-Delivery: 42
//! X-Gslbd-Signature: sha256=<hex of HMAC-SHA256(secret, body)>
//!
//! {"seq":42,"at":1796017575,"kind":"health","region":"eu-west","from":"healthy",
//!  "to":"unhealthy","reason":"timeout after 1s","instance":"ns1","version":"0.1.0"}
//! ```
//!
//! Verify by computing the HMAC of the raw body with the secret and comparing it with the
//! header in constant time; `seq` orders a target's notifications (it grows by one per
//! change in the process, so a gap means changes the receiver was not sent: filtered out or
//! dropped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::events::{self, Event};
use crate::shutdown::Shutdown;

/// Header carrying the signature: `sha256=` and the lowercase hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Gslbd-Signature";

/// One webhook target, validated from `[[notify]]`.
pub use crate::config::notify::NotifyConfig as Target;

/// What a target's task has done (exported by metrics).
pub use crate::metrics::NotifyCounters as Counters;

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The JSON body for one event: the event's fields, this instance's name and version.
pub fn body(event: &Event, instance: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(event).unwrap_or_default();
    v["instance"] = serde_json::json!(instance);
    v["version"] = serde_json::json!(env!("CARGO_PKG_VERSION"));
    v.to_string().into_bytes()
}

/// Subscribes each target to the change feed and starts its delivery task (in the current
/// tokio runtime); every task ends on `shutdown`. Returns each target's counters.
pub fn start(targets: &[Target], instance: &str, shutdown: &Shutdown) -> Vec<Arc<Counters>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    targets
        .iter()
        .map(|t| {
            let (rx, dropped) = events::subscribe(t.queue);
            let counters = Arc::new(Counters { dropped, ..Default::default() });
            tokio::spawn(deliver(t.clone(), instance.to_string(), rx, counters.clone(), shutdown.clone()));
            counters
        })
        .collect()
}

async fn deliver(
    target: Target,
    instance: String,
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
) {
    let client = match reqwest::Client::builder()
        .timeout(target.timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gslbd/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(url = %target.url, error = %e, "notify: cannot build an HTTP client; this target gets nothing");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = shutdown.recv() => return,
        };
        if !target.events.is_empty() && !target.events.iter().any(|k| k == event.change.kind()) {
            continue;
        }
        let body = body(&event, &instance);
        let signature = signature(&target.secret, &body);
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            let request = client
                .post(&target.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Gslbd-Event", event.change.kind())
                .header("X-Gslbd-Delivery", event.seq.to_string())
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone())
                .send();
            let sent = tokio::select! {
                sent = request => sent,
                _ = shutdown.recv() => return,
            };
            let failure = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("status {}", r.status().as_u16())),
                Err(e) if e.is_timeout() => Some(format!("timeout after {:?}", target.timeout)),
                Err(e) => Some(e.to_string()),
            };
            let Some(reason) = failure else {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                break;
            };
            if attempt >= target.retries {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %target.url, seq = event.seq, reason, attempts = attempt + 1, "notify: gave up on a notification");
                break;
            }
            attempt += 1;
            tracing::debug!(url = %target.url, seq = event.seq, reason, attempt, "notify: retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.recv() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_body_is_the_event_with_the_instance() {
        let e = Event {
            seq: 3,
            at: 10,
            change: crate::events::Change::Mode {
                service: "www.x.".into(),
                from: "normal".into(),
                to: "degraded".into(),
            },
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&e, "ns1")).unwrap();
        assert_eq!(v["kind"], "mode");
        assert_eq!(v["service"], "www.x.");
        assert_eq!(v["instance"], "ns1");
        assert_eq!(v["seq"], 3);
    }
}
