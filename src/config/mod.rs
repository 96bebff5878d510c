//! The TOML configuration: raw structs with spans -> a validated [`Config`].
//!
//! Every problem is reported with the file, line and column of the offending value, and all
//! problems are reported, not only the first, so an operator fixes a config in one pass.

pub mod cluster;
pub mod gslb;
pub mod health;
pub mod notify;
pub mod rrl;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::load_error::{LoadError, LoadErrorKind, Location};

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (None: defaults, e.g. `gslbd --zones DIR`).
    pub path: Option<PathBuf>,
    /// `[dns]`: listeners and protocol limits.
    pub dns: Dns,
    /// Directory whose `*.zone` files are served.
    pub zones_dir: PathBuf,
    /// `[geoip]`, `[health]`, `[regions.NAME]` and `[services."NAME"]`.
    pub gslb: gslb::GslbConfig,
    /// `[admin]`: the HTTP API.
    pub admin: Admin,
    /// `[[notify]]`: webhook targets for health, mode and override changes.
    pub notify: Vec<notify::NotifyConfig>,
    /// `[dnssec] key_directory`: zones with a key there are signed. None: nothing is signed.
    pub dnssec_key_dir: Option<PathBuf>,
    /// `[dnssec] fresh_signatures_per_second`: the budget of new signatures per UDP worker.
    pub dnssec_fresh_rate: u32,
    /// `[cluster]`: shared overrides through etcd; None (no table): standalone, as always.
    pub cluster: Option<cluster::ClusterConfig>,
}

/// `[admin]`: the HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// None: no admin API (the default without a config file).
    pub listen: Option<SocketAddr>,
    /// File with bearer tokens, one per line, `id:secret` or just `secret`.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding one more token (id "env").
    pub token_env: String,
    /// Whether GET endpoints need a token too.
    pub read_requires_token: bool,
    /// Where overrides and the audit log are kept.
    pub state_dir: PathBuf,
    /// A request must be read and answered, and a connection may stay idle, this long.
    pub request_timeout: Duration,
    /// A drain (`POST /v1/regions/NAME/drain`) that would push a remaining region's
    /// projected utilisation over this is refused unless forced. Default 0.9.
    pub drain_max_utilisation: f64,
}

/// Where the admin API listens when a config file has `[admin]` enabled without `listen`:
/// loopback only, port 8053.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8053);

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: None,
            token_file: None,
            token_env: "GSLBD_ADMIN_TOKEN".into(),
            read_requires_token: false,
            state_dir: PathBuf::from("state"),
            request_timeout: Duration::from_secs(10),
            drain_max_utilisation: 0.9,
        }
    }
}

/// `[dns]`: listeners and protocol limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Addresses to serve DNS on, UDP and TCP each (default `0.0.0.0:53` and `[::]:53`).
    pub listen: Vec<SocketAddr>,
    /// Largest UDP response in bytes offered to EDNS clients (512 to 65535, default 1232,
    /// which avoids IP fragmentation).
    pub udp_payload: u16,
    /// UDP worker threads per listen address; 0 means one per CPU.
    pub udp_workers: usize,
    /// How datagrams are spread over the UDP workers.
    pub udp_steering: UdpSteering,
    /// How long a TCP connection may stay idle between queries (default 10 s).
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections served at once (default 1024).
    pub tcp_max_connections: usize,
    /// Client networks allowed zone transfers (AXFR, over TCP, at a zone apex); empty (the
    /// default): none.
    pub transfer_allow: Vec<IpNet>,
    /// `[dns.rrl]`: response rate limiting on UDP; None (the default) is off.
    pub rrl: Option<rrl::RrlConfig>,
}

/// `dns.udp_steering`: which UDP worker (each has its own socket, SO_REUSEPORT) gets a
/// datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpSteering {
    /// The kernel's default: a hash of the client's address and port. Even over the workers
    /// whatever the network card does.
    Hash,
    /// The worker of the CPU that received the datagram, so it is answered where its data
    /// is already in cache and without waking a thread on another CPU. Even over the workers
    /// only if receive work is spread over the CPUs (multi-queue NIC with RSS, or RPS).
    Cpu,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 53)), SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 53))],
            udp_payload: 1232,
            udp_workers: 0,
            udp_steering: UdpSteering::Hash,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_connections: 1024,
            transfer_allow: Vec::new(),
            rrl: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: None,
            dns: Dns::default(),
            zones_dir: PathBuf::from("zones"),
            gslb: gslb::GslbConfig::default(),
            admin: Admin::default(),
            notify: Vec::new(),
            dnssec_key_dir: None,
            dnssec_fresh_rate: crate::dnssec::cache::DEFAULT_RATE,
            cluster: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    zones: RawZones,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
    cluster: Option<Spanned<cluster::RawCluster>>,
    #[serde(default)]
    dnssec: RawDnssec,
    #[serde(default)]
    geoip: gslb::RawGeoip,
    #[serde(default)]
    health: health::RawHealth,
    #[serde(default)]
    regions: std::collections::BTreeMap<Spanned<String>, gslb::RawRegion>,
    #[serde(default)]
    services: std::collections::BTreeMap<Spanned<String>, gslb::RawService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    listen: Option<Vec<Spanned<String>>>,
    udp_payload: Option<Spanned<i64>>,
    udp_workers: Option<Spanned<i64>>,
    udp_steering: Option<Spanned<String>>,
    tcp_idle_timeout: Option<Spanned<String>>,
    tcp_max_connections: Option<Spanned<i64>>,
    transfer_allow: Option<Vec<Spanned<String>>>,
    rrl: Option<rrl::RawRrl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    read_requires_token: Option<bool>,
    state_dir: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    drain_max_utilisation: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnssec {
    key_directory: Option<Spanned<String>>,
    fresh_signatures_per_second: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZones {
    directory: Option<Spanned<String>>,
}

/// Reads and validates a config file. Relative paths in it are relative to its directory.
pub fn load(path: &Path) -> Result<Config, Vec<LoadError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![LoadError { location: Location::file(path), kind: LoadErrorKind::ConfigUnreadable(e) }])?;
    parse(&text, path)
}

/// Validates config text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, Vec<LoadError>> {
    let at = |span: std::ops::Range<usize>, message: String, hint: Option<&str>| {
        let (line, col) = line_col(text, span.start);
        LoadError::setting(path, line as u32, col as u32, message, hint)
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, col) = line_col(text, e.span().unwrap_or(0..0).start);
        let message = e.message().trim().to_string();
        let hint =
            message.starts_with("unknown field").then_some("see README.md, section Configuration, for every key");
        vec![LoadError {
            location: Location::at(path, line as u32, col as u32),
            kind: LoadErrorKind::ConfigSyntax { message, hint },
        }]
    })?;
    let mut errors = Vec::new();
    let mut cfg = Config { path: Some(path.to_path_buf()), ..Config::default() };
    let base = path.parent().unwrap_or(Path::new("."));

    if let Some(list) = raw.dns.listen {
        cfg.dns.listen.clear();
        for item in list {
            match parse_listen(item.get_ref()) {
                Some(a) => cfg.dns.listen.push(a),
                None => errors.push(at(
                    item.span(),
                    format!("dns.listen: {:?} is not an address with a port", item.get_ref()),
                    Some("write e.g. \"0.0.0.0:53\" or \"[::]:53\""),
                )),
            }
        }
        if cfg.dns.listen.is_empty() && errors.is_empty() {
            errors.push(at(0..0, "dns.listen is empty: gslbd would not answer anything".into(), None));
        }
    }
    if let Some(v) = raw.dns.udp_payload {
        let hint = "use 512..=65535; 1232 avoids IP fragmentation";
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        if let Some(n) = in_range(&v, 512..=65535, "dns.udp_payload", hint, &mut report) {
            cfg.dns.udp_payload = n as u16;
        }
    }
    if let Some(v) = raw.dns.udp_workers {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        if let Some(n) = in_range(&v, 0..=256, "dns.udp_workers", "use 0 (one per CPU) up to 256", &mut report) {
            cfg.dns.udp_workers = n as usize;
        }
    }
    if let Some(v) = raw.dns.udp_steering {
        match v.get_ref().as_str() {
            "hash" => cfg.dns.udp_steering = UdpSteering::Hash,
            "cpu" => cfg.dns.udp_steering = UdpSteering::Cpu,
            other => errors.push(at(
                v.span(),
                format!("dns.udp_steering: {other:?} is not a choice"),
                Some("use \"hash\" (the default) or \"cpu\""),
            )),
        }
    }
    if let Some(v) = raw.dns.tcp_idle_timeout {
        match parse_duration(v.get_ref()) {
            Some(d) if !d.is_zero() => cfg.dns.tcp_idle_timeout = d,
            _ => errors.push(at(
                v.span(),
                format!("dns.tcp_idle_timeout: {:?} is not a duration", v.get_ref()),
                Some("write e.g. \"10s\", \"500ms\" or \"2m\""),
            )),
        }
    }
    if let Some(v) = raw.dns.tcp_max_connections {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        if let Some(n) = in_range(&v, 1..=1_000_000, "dns.tcp_max_connections", "use 1 to 1000000", &mut report) {
            cfg.dns.tcp_max_connections = n as usize;
        }
    }
    if let Some(list) = raw.dns.transfer_allow {
        for item in list {
            match parse_net(item.get_ref()) {
                Some(n) => cfg.dns.transfer_allow.push(n),
                None => errors.push(at(
                    item.span(),
                    format!("dns.transfer_allow: {:?} is not an address or CIDR prefix", item.get_ref()),
                    Some("write e.g. \"192.0.2.53\" or \"2001:db8::/64\""),
                )),
            }
        }
    }
    if let Some(r) = raw.dns.rrl {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        cfg.dns.rrl = Some(rrl::validate(r, &mut report));
    }
    if let Some(dir) = raw.zones.directory {
        cfg.zones_dir = base.join(dir.get_ref());
    } else {
        cfg.zones_dir = base.join("zones");
    }
    cfg.dnssec_key_dir = raw.dnssec.key_directory.map(|d| base.join(d.get_ref()));
    if let Some(v) = raw.dnssec.fresh_signatures_per_second {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        let hint = "use 1 to 1000000; a core makes 20,000 to 45,000 ECDSA signatures a second";
        if let Some(n) = in_range(&v, 1..=1_000_000, "dnssec.fresh_signatures_per_second", hint, &mut report) {
            cfg.dnssec_fresh_rate = n as u32;
        }
    }
    // [admin]: on by default with a config file, on loopback.
    for (i, n) in raw.notify.into_iter().enumerate() {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        if let Some(n) = notify::validate(n, i, base, &mut report) {
            cfg.notify.push(n);
        }
    }
    if let Some(c) = raw.cluster {
        let mut report = |span, msg, hint: Option<&str>| errors.push(at(span, msg, hint));
        let table = c.span();
        cfg.cluster = cluster::validate(c.into_inner(), table, base, &mut report);
    }
    let raw_admin = raw.admin;
    cfg.admin.listen = if raw_admin.enabled == Some(false) { None } else { Some(DEFAULT_ADMIN_LISTEN) };
    if let Some(l) = raw_admin.listen {
        match parse_listen(l.get_ref()) {
            Some(a) => {
                if cfg.admin.listen.is_some() {
                    cfg.admin.listen = Some(a);
                }
            }
            None => errors.push(at(
                l.span(),
                format!("admin.listen: {:?} is not an address with a port", l.get_ref()),
                Some("write e.g. \"127.0.0.1:8053\""),
            )),
        }
    }
    cfg.admin.token_file = raw_admin.token_file.map(|f| base.join(f.get_ref()));
    if let Some(e) = raw_admin.token_env {
        cfg.admin.token_env = e.into_inner();
    }
    cfg.admin.read_requires_token = raw_admin.read_requires_token.unwrap_or(false);
    if let Some(t) = raw_admin.request_timeout {
        match parse_duration(t.get_ref()) {
            Some(d) if !d.is_zero() => cfg.admin.request_timeout = d,
            _ => errors.push(at(
                t.span(),
                format!("admin.request_timeout: {:?} is not a duration", t.get_ref()),
                Some("write e.g. \"10s\""),
            )),
        }
    }
    if let Some(m) = raw_admin.drain_max_utilisation {
        let v = *m.get_ref();
        if v > 0.0 && v <= 10.0 {
            cfg.admin.drain_max_utilisation = v;
        } else {
            errors.push(at(
                m.span(),
                format!("admin.drain_max_utilisation: {v} is out of range"),
                Some("use a number above 0, e.g. 0.9 (1 = at capacity)"),
            ));
        }
    }
    cfg.admin.state_dir = base.join(raw_admin.state_dir.map_or_else(|| "state".to_string(), |d| d.into_inner()));

    let pos_of = |offset: usize| {
        let (line, col) = line_col(text, offset);
        gslb::Pos { line, col }
    };
    let mut report = |span, message, hint: Option<&str>| errors.push(at(span, message, hint));
    // The document again, with the span of every key and value: each check's table is
    // handed to its kind (health::probe) as written. It parsed above, so it parses here.
    let doc = match toml::de::DeTable::parse(text) {
        Ok(t) => Spanned::new(t.span(), toml::de::DeValue::Table(t.into_inner())),
        Err(_) => Spanned::new(0..0, toml::de::DeValue::Table(Default::default())),
    };
    cfg.gslb = gslb::validate(raw.geoip, raw.health, raw.regions, raw.services, base, &doc, &pos_of, &mut report);
    // In file order, however the checks happened to run.
    errors.sort_by_key(|e| (e.location.line, e.location.column));
    if errors.is_empty() { Ok(cfg) } else { Err(errors) }
}

pub(crate) use crate::diag::in_range;

/// `host:port`, with IPv6 hosts in brackets.
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

pub use crate::addr::parse_net;

/// `"10s"`, `"500ms"`, `"2m"`, `"1h"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    Some(d)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        parse(text, Path::new("/etc/gslbd/gslbd.toml")).unwrap_err().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults_and_relative_zone_dir() {
        let c = parse("", Path::new("/etc/gslbd/gslbd.toml")).unwrap();
        assert_eq!(c.dns.udp_payload, 1232);
        assert_eq!(c.zones_dir, PathBuf::from("/etc/gslbd/zones"));
        let c = parse("[zones]\ndirectory = \"z\"\n[dns]\nlisten = [\"127.0.0.1:5300\", \"[::1]:5300\"]\ntcp_idle_timeout = \"1500ms\"\ntransfer_allow = [\"10.0.0.0/8\", \"::1\"]\n", Path::new("/x/g.toml")).unwrap();
        assert_eq!(c.zones_dir, PathBuf::from("/x/z"));
        assert_eq!(c.dns.listen.len(), 2);
        assert_eq!(c.dns.tcp_idle_timeout, Duration::from_millis(1500));
        assert_eq!(c.dns.transfer_allow.len(), 2);
        assert_eq!(c.dnssec_key_dir, None);
        let c =
            parse("[dnssec]\nkey_directory = \"keys\"\nfresh_signatures_per_second = 200\n", Path::new("/x/g.toml"))
                .unwrap();
        assert_eq!(c.dnssec_key_dir, Some(PathBuf::from("/x/keys")));
        assert_eq!(c.dnssec_fresh_rate, 200);
        assert!(parse("[dnssec]\nfresh_signatures_per_second = 0\n", Path::new("/x/g.toml")).is_err());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = errs("[dns]\nlisten = [\"127.0.0.1:53\"]\nlisen = 3\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("/etc/gslbd/gslbd.toml:3:1: error: unknown field `lisen`"), "{}", e[0]);
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let e = errs("[dns]\nudp_payload = \"big\"\n");
        assert!(e[0].starts_with("/etc/gslbd/gslbd.toml:2:15: error:"), "{}", e[0]);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let e = errs(
            "[dns]\nlisten = [\"nope\", \"127.0.0.1:53\"]\nudp_payload = 100\ntcp_idle_timeout = \"soon\"\ntransfer_allow = [\"10.0.0.0/33\"]\n",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].contains(":2:11: error: dns.listen: \"nope\""), "{}", e[0]);
        assert!(e[1].contains(":3:15: error: dns.udp_payload: 100 is out of range\n  hint:"), "{}", e[1]);
        assert!(e[2].contains(":4:20:"), "{}", e[2]);
        assert!(e[3].contains(":5:19:"), "{}", e[3]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration(""), None);
    }
}
