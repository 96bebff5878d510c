//! `[cluster]`: several gslbd instances sharing overrides (and, later, one health verdict)
//! through etcd. Without the table gslbd runs alone, exactly as before.
//!
//! ```toml
//! [cluster]
//! etcd = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]  # client URLs, http or https
//! prefix = "/gslbd/prod"         # key prefix: several gslbd clusters may share one etcd
//! instance = "ns1"               # default: the host name; must be unique among live members
//! site = "fra"                   # probe duties spread over distinct sites first
//! lease_ttl = "10s"              # membership lease (default 10s)
//! probers_per_region = 3         # members probing each region (default 3)
//! verdict = "majority"           # or "any-up", "all-up", "up-if-more-than:18%"
//! tls_ca_file = "etcd-ca.pem"    # trust only this CA for https endpoints
//! tls_cert_file = "client.pem"   # client certificate and key, both or neither
//! tls_key_file = "client.key"
//! credentials_file = "etcd.auth" # one line "user:password", for etcd's auth
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::gslb::Report;
use super::{in_range, parse_duration};

/// How the observations of the members probing a region become the region's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VerdictRule {
    /// Down only when more than half of the fresh observers say down (a tie keeps the
    /// region up: with two probers, one broken path cannot take it out).
    Majority,
    /// Up when any fresh observer says up.
    AnyUp,
    /// Up only when every fresh observer says up.
    AllUp,
    /// Up when more than this percentage of the fresh observers say up.
    UpIfMoreThan(f64),
}

impl VerdictRule {
    fn parse(s: &str) -> Option<VerdictRule> {
        match s {
            "majority" => Some(VerdictRule::Majority),
            "any-up" => Some(VerdictRule::AnyUp),
            "all-up" => Some(VerdictRule::AllUp),
            _ => {
                let pct = s.strip_prefix("up-if-more-than:")?.strip_suffix('%')?.trim().parse::<f64>().ok()?;
                (0.0..100.0).contains(&pct).then_some(VerdictRule::UpIfMoreThan(pct))
            }
        }
    }
}

/// TLS towards etcd: the PEM files, read and checked when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdTls {
    /// CA certificates (PEM) trusted for the etcd endpoints; empty: the system's roots.
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and private key (PEM), for etcd's `--client-cert-auth`.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd client URLs, tried in order.
    pub etcd: Vec<String>,
    /// Key prefix without a trailing `/` (default `/gslbd`).
    pub prefix: String,
    /// This member's name (default: the host name).
    pub instance: String,
    /// This member's site (default: `default`).
    pub site: String,
    /// Membership lease TTL (default 10 s): a member that stops renewing leaves this long after.
    pub lease_ttl: Duration,
    /// Members probing each region (default 3).
    pub probers_per_region: u32,
    /// How the observers' verdicts make one (default `majority`).
    pub verdict: VerdictRule,
    /// TLS to etcd: CA, client certificate and key (all None: plain HTTP).
    pub tls: EtcdTls,
    /// etcd user and password (from `credentials_file`).
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    etcd: Option<Spanned<Vec<Spanned<String>>>>,
    prefix: Option<Spanned<String>>,
    instance: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    lease_ttl: Option<Spanned<String>>,
    probers_per_region: Option<Spanned<i64>>,
    verdict: Option<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
    credentials_file: Option<Spanned<String>>,
}

/// This host's name (`HOSTNAME`, else /proc/sys/kernel/hostname, else `gslbd`): the default
/// `[cluster] instance`, and the `instance` field of webhook notifications.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gslbd".into())
}

/// A name usable in an etcd key and a log line: letters, digits, `.`, `_`, `-`, 1 to 63.
fn is_plain_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads a file named in the table, relative to the config file, reporting at the value.
fn read_file(v: &Spanned<String>, field: &str, base: &Path, report: &mut Report<'_>) -> Option<Vec<u8>> {
    let path: PathBuf = base.join(v.get_ref());
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.iter().all(u8::is_ascii_whitespace) => Some(bytes),
        Ok(_) => {
            report(v.span(), format!("cluster.{field}: {} is empty", path.display()), None);
            None
        }
        Err(e) => {
            report(
                v.span(),
                format!("cluster.{field}: cannot read {}: {e}", path.display()),
                Some("a path relative to the config file"),
            );
            None
        }
    }
}

/// Whether `pem` holds at least one block of `kind` (e.g. "CERTIFICATE", "PRIVATE KEY").
fn has_pem(pem: &[u8], kind: &str) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.lines().any(|l| l.starts_with("-----BEGIN ") && l.contains(kind))
}

pub(super) fn validate(
    raw: RawCluster,
    table: std::ops::Range<usize>,
    base: &Path,
    report: &mut Report<'_>,
) -> Option<ClusterConfig> {
    let mut ok = true;
    let mut etcd = Vec::new();
    let Some(endpoints) = raw.etcd else {
        report(
            table,
            "cluster.etcd is missing".into(),
            Some("list etcd client URLs, e.g. etcd = [\"http://127.0.0.1:2379\"]"),
        );
        return None;
    };
    if endpoints.get_ref().is_empty() {
        report(
            endpoints.span(),
            "cluster.etcd is empty".into(),
            Some("list etcd client URLs, e.g. [\"http://127.0.0.1:2379\"]"),
        );
        ok = false;
    }
    for url in endpoints.get_ref() {
        let u = url.get_ref().trim_end_matches('/');
        let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
            report(
                url.span(),
                format!("cluster.etcd: {:?} is not an http or https URL of an etcd client endpoint", url.get_ref()),
                Some("write e.g. \"http://10.0.0.1:2379\" (scheme, host and port, no path)"),
            );
            ok = false;
        } else {
            etcd.push(u.to_string());
        }
    }
    let mut prefix = "/gslbd".to_string();
    if let Some(p) = &raw.prefix {
        let trimmed = p.get_ref().trim_end_matches('/');
        if !trimmed.starts_with('/') || trimmed.len() < 2 || trimmed.chars().any(char::is_whitespace) {
            report(
                p.span(),
                format!("cluster.prefix: {:?} is not a key prefix", p.get_ref()),
                Some("start with \"/\" and use no spaces, e.g. \"/gslbd/prod\""),
            );
            ok = false;
        } else {
            prefix = trimmed.to_string();
        }
    }
    let mut instance = host_name();
    if let Some(i) = &raw.instance {
        instance = i.get_ref().clone();
    }
    if !is_plain_name(&instance) {
        let span = raw.instance.as_ref().map_or(table.clone(), |i| i.span());
        report(
            span,
            format!("cluster.instance: {instance:?} is not a plain name"),
            Some("use 1 to 63 letters, digits, \".\", \"_\" or \"-\"; set it when the host name is not one"),
        );
        ok = false;
    }
    let mut site = "default".to_string();
    if let Some(s) = &raw.site {
        if is_plain_name(s.get_ref()) {
            site = s.get_ref().clone();
        } else {
            report(
                s.span(),
                format!("cluster.site: {:?} is not a plain name", s.get_ref()),
                Some("use 1 to 63 letters, digits, \".\", \"_\" or \"-\""),
            );
            ok = false;
        }
    }
    let mut lease_ttl = Duration::from_secs(10);
    if let Some(t) = &raw.lease_ttl {
        match parse_duration(t.get_ref()) {
            Some(d) if (Duration::from_secs(2)..=Duration::from_secs(300)).contains(&d) && d.subsec_nanos() == 0 => {
                lease_ttl = d
            }
            _ => {
                report(
                    t.span(),
                    format!("cluster.lease_ttl: {:?} is not a whole number of seconds from 2s to 300s", t.get_ref()),
                    Some("write e.g. \"10s\""),
                );
                ok = false;
            }
        }
    }
    let mut probers_per_region = 3;
    if let Some(k) = &raw.probers_per_region {
        match in_range(k, 1..=16, "cluster.probers_per_region", "use 1 to 16", report) {
            Some(n) => probers_per_region = n as u32,
            None => ok = false,
        }
    }
    let mut verdict = VerdictRule::Majority;
    if let Some(v) = &raw.verdict {
        match VerdictRule::parse(v.get_ref()) {
            Some(r) => verdict = r,
            None => {
                report(
                    v.span(),
                    format!("cluster.verdict: {:?} is not a verdict rule", v.get_ref()),
                    Some("use \"majority\", \"any-up\", \"all-up\" or \"up-if-more-than:N%\" with N from 0 to 99"),
                );
                ok = false;
            }
        }
    }
    let mut tls = EtcdTls::default();
    if let Some(ca) = &raw.tls_ca_file
        && let Some(pem) = read_file(ca, "tls_ca_file", base, report)
    {
        if has_pem(&pem, "CERTIFICATE") {
            tls.ca_pem = pem;
        } else {
            report(
                ca.span(),
                "cluster.tls_ca_file: no PEM certificate in it".into(),
                Some("a PEM file with -----BEGIN CERTIFICATE----- blocks: the CA of etcd's server certificates"),
            );
            ok = false;
        }
    }
    match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(c), Some(k)) => {
            let cert = read_file(c, "tls_cert_file", base, report);
            let key = read_file(k, "tls_key_file", base, report);
            match (cert, key) {
                (Some(cert), Some(key)) if has_pem(&cert, "CERTIFICATE") && has_pem(&key, "PRIVATE KEY") => {
                    tls.client_pem = Some((cert, key));
                }
                (Some(_), Some(_)) => {
                    report(
                        c.span(),
                        "cluster.tls_cert_file/tls_key_file: expected a PEM certificate and a PEM private key".into(),
                        None,
                    );
                    ok = false;
                }
                _ => ok = false,
            }
        }
        (Some(one), None) | (None, Some(one)) => {
            report(
                one.span(),
                "cluster: tls_cert_file and tls_key_file go together".into(),
                Some("set both for a client certificate, or neither"),
            );
            ok = false;
        }
        (None, None) => {}
    }
    let mut credentials = None;
    if let Some(f) = &raw.credentials_file
        && let Some(bytes) = read_file(f, "credentials_file", base, report)
    {
        let text = String::from_utf8_lossy(&bytes);
        match text.trim().split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                credentials = Some((user.to_string(), password.to_string()));
            }
            _ => {
                report(
                    f.span(),
                    "cluster.credentials_file: expected one line \"user:password\"".into(),
                    Some("the etcd user and its password, separated by a colon"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(ClusterConfig {
        etcd,
        prefix,
        instance,
        site,
        lease_ttl,
        probers_per_region,
        verdict,
        tls,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn errs(text: &str) -> Vec<String> {
        crate::config::parse(text, Path::new("/etc/gslbd/gslbd.toml"))
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_and_no_table() {
        let c = crate::config::parse("", Path::new("g.toml")).unwrap();
        assert!(c.cluster.is_none(), "no [cluster]: standalone");
        let c = crate::config::parse(
            "[cluster]\netcd = [\"http://127.0.0.1:2379/\"]\ninstance = \"a\"\n",
            Path::new("g.toml"),
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.etcd, ["http://127.0.0.1:2379"]);
        assert_eq!((cl.prefix.as_str(), cl.site.as_str()), ("/gslbd", "default"));
        assert_eq!(cl.lease_ttl, std::time::Duration::from_secs(10));
        assert_eq!(cl.probers_per_region, 3);
        assert_eq!(cl.verdict, super::VerdictRule::Majority);
    }

    #[test]
    fn verdict_rules() {
        use super::VerdictRule::*;
        let p = super::VerdictRule::parse;
        assert_eq!(p("any-up"), Some(AnyUp));
        assert_eq!(p("all-up"), Some(AllUp));
        assert_eq!(p("up-if-more-than:18%"), Some(UpIfMoreThan(18.0)));
        assert_eq!(p("up-if-more-than:100%"), None);
        assert_eq!(p("up-if-more-than:18"), None);
        assert_eq!(p("most"), None);
    }

    #[test]
    fn every_bad_value_is_reported_at_its_place() {
        let e = errs(
            "[cluster]\netcd = [\"etcd:2379\"]\nprefix = \"gslbd\"\ninstance = \"a b\"\nlease_ttl = \"1s\"\nprobers_per_region = 0\nverdict = \"most\"\ntls_cert_file = \"c.pem\"\n",
        );
        assert_eq!(e.len(), 7, "{e:?}");
        assert!(e[0].starts_with("/etc/gslbd/gslbd.toml:2:9: error: cluster.etcd: \"etcd:2379\""), "{}", e[0]);
        assert!(e[0].contains("hint: write e.g. \"http://"), "{}", e[0]);
        assert!(e[1].contains(":3:10: error: cluster.prefix"), "{}", e[1]);
        assert!(e[2].contains(":4:12: error: cluster.instance: \"a b\""), "{}", e[2]);
        assert!(e[3].contains(":5:13: error: cluster.lease_ttl"), "{}", e[3]);
        assert!(e[4].contains(":6:22: error: cluster.probers_per_region: 0 is out of range"), "{}", e[4]);
        assert!(
            e[5].contains(":7:11: error: cluster.verdict: \"most\"") && e[5].contains("up-if-more-than"),
            "{}",
            e[5]
        );
        assert!(e[6].contains(":8:17: error: cluster: tls_cert_file and tls_key_file go together"), "{}", e[6]);
    }

    #[test]
    fn unknown_keys_and_missing_etcd_are_errors() {
        let e = errs("[cluster]\netcd = [\"http://a:1\"]\nleader = true\n");
        assert!(e[0].contains(":3:1: error: unknown field `leader`"), "{e:?}");
        let e = errs("[zones]\ndirectory = \"z\"\n[cluster]\nsite = \"x\"\n");
        assert!(e[0].contains("error: cluster.etcd is missing"), "{e:?}");
        assert!(e[0].contains("hint: list etcd client URLs"), "{e:?}");
    }

    #[test]
    fn credentials_and_tls_files_are_read_relative_to_the_config() {
        let tmp = crate::testutil::TempDir::new("cluster-cfg");
        tmp.write("etcd.auth", "gslbd:s3cret\n");
        tmp.write("ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let cfg = tmp.write(
            "g.toml",
            "[cluster]\netcd = [\"https://a:2379\"]\ninstance = \"a\"\ncredentials_file = \"etcd.auth\"\ntls_ca_file = \"ca.pem\"\n",
        );
        let c = crate::config::load(&cfg).unwrap().cluster.unwrap();
        assert_eq!(c.credentials, Some(("gslbd".into(), "s3cret".into())));
        assert!(!c.tls.ca_pem.is_empty());
        tmp.write("etcd.auth", "nocolon\n");
        let e: Vec<String> = crate::config::load(&cfg).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(e[0].contains(":4:20: error: cluster.credentials_file: expected one line"), "{e:?}");
    }
}
