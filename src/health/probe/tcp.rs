//! `type = "tcp"`: a TCP connect to `address`, then close. Passes when the connection is
//! accepted; nothing is sent.
//!
//! | key       | default | meaning                                                       |
//! |-----------|---------|---------------------------------------------------------------|
//! | `address` | —       | required: `host:port` (`[v6]:port`; a name is resolved each probe) |

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{Attempt, Check, FailReason, Kind, Report, ScriptFn, Table};

/// The registry entry of TCP checks.
pub static KIND: Kind = Kind { types: &["tcp"], keys: &["address"], parse, foreign_key };

/// A TCP connect check. (Named as the check kind so that `Debug`, which the saved-verdict
/// fingerprint digests, reads `Tcp { address: ".." }` as in earlier versions.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// `host:port` as configured.
    pub address: String,
}

/// The table as written.
#[derive(Debug, Deserialize)]
struct RawTcp {
    address: Option<Spanned<String>>,
}

fn parse(table: &Table<'_, '_>, report: &mut Report<'_>) -> Option<Arc<dyn Check>> {
    let raw: RawTcp = table.deserialize(report)?;
    let Some(a) = &raw.address else {
        report(
            table.type_span.clone(),
            format!("{}: a tcp check needs an address", table.field),
            Some("add address = \"192.0.2.10:443\""),
        );
        return None;
    };
    match a.get_ref().rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Some(Arc::new(Tcp { address: a.get_ref().clone() }))
        }
        _ => {
            report(
                a.span(),
                format!("{}: {:?} is not host:port", table.key("address"), a.get_ref()),
                Some("write e.g. \"192.0.2.10:443\", \"[2001:db8::1]:443\" or \"lb.example.net:443\""),
            );
            None
        }
    }
}

fn foreign_key(_type_name: &str, key: &str) -> (String, String) {
    (format!("tcp checks only connect; {key} is for http and https checks"), "remove it, or use type = \"http\"".into())
}

impl Check for Tcp {
    fn build(&self) -> Result<ScriptFn, String> {
        let address: Arc<str> = self.address.as_str().into();
        Ok(Arc::new(move || -> Attempt {
            let address = address.clone();
            Box::pin(async move { connect(&address).await })
        }))
    }

    fn type_name(&self) -> &'static str {
        "tcp"
    }
}

/// Connects to each address the name resolves to until one accepts.
async fn connect(address: &str) -> Result<(), FailReason> {
    let addrs: Vec<_> =
        tokio::net::lookup_host(address).await.map_err(|e| FailReason::Resolve(e.to_string()))?.collect();
    let mut last = FailReason::Resolve(format!("{address}: no addresses"));
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = FailReason::ConnectionRefused,
            Err(e) => last = FailReason::Connect(e.to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::super::ProbeOutcome;
    use super::super::tests::run;
    use super::*;

    #[tokio::test]
    async fn tcp_connect_passes_with_rtt() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let outcome = run(Arc::new(Tcp { address: l.local_addr().unwrap().to_string() })).await;
        let ProbeOutcome::Ok { rtt } = outcome else { panic!("{outcome:?}") };
        assert!(rtt < Duration::from_millis(300));
    }

    #[test]
    fn debug_reads_as_in_earlier_versions() {
        // The saved-verdict fingerprint digests it: a change would forget verdicts.
        assert_eq!(format!("{:?}", Tcp { address: "a:1".into() }), "Tcp { address: \"a:1\" }");
    }
}
