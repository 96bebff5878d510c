//! `[geoip]`, `[regions.NAME]` and `[services."NAME"]`: the load-balancing part of the
//! configuration, validated into plain values. Cross-checks that need the zones (a service
//! name inside a served zone, no static records at it) happen where both are known
//! (`gslb::Gslb::build`); what is checked here is everything the config alone can tell.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use toml::Spanned;

use super::health::{CheckConfig, HealthConfig};
use super::in_range;
use crate::diag::region_list;
use crate::name::Name;
use crate::policy::{self, Chain};

impl GslbConfig {
    /// The regions that have checks, as the prober runs them.
    pub fn region_checks(&self) -> Vec<crate::health::RegionChecks> {
        self.regions
            .iter()
            .filter(|r| !r.checks.is_empty())
            .map(|r| crate::health::RegionChecks { name: r.name.clone(), checks: r.checks.clone(), quorum: r.quorum })
            .collect()
    }

    /// The regions that have a load source, as the load poller runs them.
    pub fn load_sources(&self) -> Vec<(String, crate::load::LoadConfig)> {
        self.regions.iter().filter_map(|r| Some((r.name.clone(), r.load.clone()?))).collect()
    }
}

/// A place in the config file, for errors found after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column in bytes, 1-based.
    pub col: usize,
}

/// One regional balancer.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionConfig {
    /// The region's name, the key of `[regions.NAME]`.
    pub name: String,
    /// IPv4 addresses answered for A queries (in the order given).
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses answered for AAAA queries (in the order given).
    pub ipv6: Vec<Ipv6Addr>,
    /// A hostname to answer with a CNAME (a cloud balancer's DNS name), instead of addresses.
    pub cname: Option<Name>,
    /// Latitude, longitude in degrees.
    pub coordinates: Option<(f64, f64)>,
    /// Share of traffic for the weighted policy, 0 (drained) to [`MAX_WEIGHT`]; default
    /// [`DEFAULT_WEIGHT`].
    pub weight: u32,
    /// Lower is preferred by the failover policy.
    pub priority: u32,
    /// Kilometres subtracted from this region's distance by the nearest policy (positive draws
    /// more clients, negative fewer), like Route 53 geoproximity bias.
    pub bias_km: f64,
    /// Health checks; none means the region is always up (nothing to ask, so nothing to
    /// doubt: the operator still has weight 0 to drain it).
    pub checks: Vec<CheckConfig>,
    /// How many checks must pass for the region to be healthy; None: all of them.
    pub quorum: Option<usize>,
    /// `[regions.NAME.load]`: where its balancer says how full it is; None: load unknown.
    pub load: Option<crate::load::LoadConfig>,
    /// Requests or sessions it can take: the denominator of prometheus and json sources
    /// without their own, and what a safe drain's projection weighs regions by.
    pub capacity: Option<f64>,
    /// Where `[regions.NAME]` is, for errors found later.
    pub pos: Pos,
}

/// What a service answers when none of its regions is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// Answer as if every region were healthy (gdnsd and Route 53 do this).
    FailOpen,
    /// Answer the service's `fallback` addresses.
    Fallback,
    /// NOERROR with no records (and the SOA).
    NoData,
    /// SERVFAIL, so resolvers try again later.
    Servfail,
}

/// Fewer healthy regions than this makes the service fail open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinHealthy {
    /// At least this many regions.
    Count(usize),
    /// At least this share of the service's regions, 0.0 to 1.0 (written as a percentage,
    /// `"50%"`), rounded up.
    Fraction(f64),
}

/// One `[services."NAME"]` table, validated: the name it answers and how it steers.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The service's owner name (inside a served zone, with no static records).
    pub name: Name,
    /// Indices into the config's regions, in the order given.
    pub regions: Vec<usize>,
    /// The `policy = [...]` chain, built.
    pub policy: Chain,
    /// TTL of its answers in seconds; default [`DEFAULT_TTL`].
    pub ttl: u32,
    /// TTL in seconds while the service is not in normal mode (degraded, fail-open, all down);
    /// the smaller of this and `ttl` is used. None: always `ttl`.
    pub degraded_ttl: Option<u32>,
    /// Below this many healthy regions the service fails open; default one region.
    pub min_healthy: MinHealthy,
    /// What to answer when no region is healthy.
    pub when_all_down: AllDown,
    /// Addresses answered when all regions are down and `when_all_down = "fallback"`.
    pub fallback: Vec<IpAddr>,
    /// Where `[services."NAME"]` is, for errors found later.
    pub pos: Pos,
}

/// The load-balancing part of the configuration: GeoIP database, health defaults, regions
/// and services.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GslbConfig {
    /// The `[geoip] database` path, joined to the config file's directory; None without GeoIP.
    pub geoip: Option<std::path::PathBuf>,
    /// The `[health]` defaults every region's checks inherit.
    pub health: HealthConfig,
    /// The regions, in the order of the config file; services name them by index.
    pub regions: Vec<RegionConfig>,
    /// The services, in the order of the config file.
    pub services: Vec<ServiceConfig>,
}

/// Default service TTL, in seconds: short, so a health change reaches clients quickly.
pub const DEFAULT_TTL: u32 = 30;
/// Default region weight.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Default region priority for the failover policy (lower is preferred).
pub const DEFAULT_PRIORITY: u32 = 100;
/// Largest region weight accepted (in the config and by the admin API).
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Most regions one configuration may define: a region is addressed on the query path by a
/// 16-bit id (`policy::RegionId`), so the limit is checked here, with the region's line,
/// rather than ids wrapping silently.
pub const MAX_REGIONS: usize = u16::MAX as usize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeoip {
    database: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    addresses: Option<Vec<Spanned<String>>>,
    cname: Option<Spanned<String>>,
    coordinates: Option<Spanned<Vec<f64>>>,
    weight: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
    bias_km: Option<Spanned<f64>>,
    /// Read from the document by `health::check_table`, so each kind reads its own keys.
    check: Option<Spanned<serde::de::IgnoredAny>>,
    checks: Option<Vec<Spanned<serde::de::IgnoredAny>>>,
    quorum: Option<Spanned<i64>>,
    load: Option<Spanned<RawLoad>>,
    capacity: Option<Spanned<f64>>,
}

/// `[regions.NAME.load]`: the keys of every source type; each type's validation refuses
/// the keys of the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    pointer: Option<Spanned<String>>,
    current: Option<Spanned<String>>,
    capacity: Option<Spanned<RawCapacity>>,
    tls_ca_file: Option<Spanned<String>>,
}

/// A source's `capacity`: a number, or (json) a pointer into the document.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCapacity {
    Number(f64),
    Pointer(String),
}

/// `policy = "weighted"` or `policy = ["geo", "nearest"]`.
#[derive(Debug)]
enum RawPolicy {
    One(String),
    Chain(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a policy name or a list of policy names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPolicy, E> {
                Ok(RawPolicy::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawPolicy, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    v.push(item);
                }
                Ok(RawPolicy::Chain(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[services."NAME"]`: its own keys, and each policy's settings table under the policy's
/// name (read by the policy's file, `policy::read_table`).
#[derive(Debug)]
pub(super) struct RawService {
    regions: Spanned<Vec<Spanned<String>>>,
    policy: Spanned<RawPolicy>,
    ttl: Option<Spanned<i64>>,
    degraded_ttl: Option<Spanned<i64>>,
    min_healthy: Option<Spanned<toml::Value>>,
    when_all_down: Option<Spanned<String>>,
    fallback: Option<Vec<Spanned<String>>>,
    tables: Vec<policy::Table>,
}

/// The service's own keys; policy tables follow (`policy::TABLE_NAMES`).
const SERVICE_KEYS: [&str; 7] =
    ["regions", "policy", "ttl", "degraded_ttl", "min_healthy", "when_all_down", "fallback"];

/// Every key a service table may have, for "unknown field" errors.
static SERVICE_FIELDS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| SERVICE_KEYS.iter().chain(policy::TABLE_NAMES.iter()).copied().collect());

/// A key of a service table, checked as it is read, so an unknown one is reported at the key
/// (as `deny_unknown_fields` does).
struct ServiceKey(&'static str);

impl<'de> Deserialize<'de> for ServiceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ServiceKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a service setting")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ServiceKey, E> {
                let fields: &'static [&'static str] = SERVICE_FIELDS.as_slice();
                match fields.iter().find(|f| **f == v) {
                    Some(f) => Ok(ServiceKey(f)),
                    None => Err(E::unknown_field(v, fields)),
                }
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for RawService {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawService;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct RawService")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawService, A::Error> {
                use serde::de::Error;
                let mut regions = None;
                let mut policy = None;
                let (mut ttl, mut degraded_ttl, mut min_healthy, mut when_all_down, mut fallback) =
                    (None, None, None, None, None);
                let mut tables = Vec::new();
                while let Some(ServiceKey(key)) = map.next_key()? {
                    match key {
                        "regions" => regions = Some(map.next_value()?),
                        "policy" => policy = Some(map.next_value()?),
                        "ttl" => ttl = Some(map.next_value()?),
                        "degraded_ttl" => degraded_ttl = Some(map.next_value()?),
                        "min_healthy" => min_healthy = Some(map.next_value()?),
                        "when_all_down" => when_all_down = Some(map.next_value()?),
                        "fallback" => fallback = Some(map.next_value()?),
                        table => tables.push(policy::read_table(table, &mut map)?),
                    }
                }
                Ok(RawService {
                    regions: regions.ok_or_else(|| A::Error::missing_field("regions"))?,
                    policy: policy.ok_or_else(|| A::Error::missing_field("policy"))?,
                    ttl,
                    degraded_ttl,
                    min_healthy,
                    when_all_down,
                    fallback,
                    tables,
                })
            }
        }
        d.deserialize_struct("RawService", &SERVICE_KEYS, V)
    }
}

pub(super) use crate::diag::Report;

#[allow(clippy::too_many_arguments)] // one call site, in config::parse
pub(super) fn validate(
    geoip: RawGeoip,
    health: super::health::RawHealth,
    regions: BTreeMap<Spanned<String>, RawRegion>,
    services: BTreeMap<Spanned<String>, RawService>,
    base: &std::path::Path,
    doc: &Spanned<toml::de::DeValue<'_>>,
    pos_of: &dyn Fn(usize) -> Pos,
    report: &mut Report<'_>,
) -> GslbConfig {
    let mut out = GslbConfig {
        geoip: geoip.database.map(|d| base.join(d.get_ref())),
        health: super::health::health(health, report),
        ..Default::default()
    };
    let history = out.health.history;
    for (name, raw) in regions {
        if let Some(r) = region(&name, raw, base, doc, history, pos_of, report) {
            if out.regions.len() == MAX_REGIONS {
                report(
                    name.span(),
                    format!("region {} is one more than the {MAX_REGIONS} regions gslbd can address", r.name),
                    Some("split the configuration over several gslbd clusters"),
                );
                continue;
            }
            out.regions.push(r);
        }
    }
    let names: Vec<&str> = out.regions.iter().map(|r| r.name.as_str()).collect();
    let mut services_out = Vec::new();
    for (name, raw) in services {
        if let Some(s) = service(&name, raw, &names, &out.regions, out.geoip.is_some(), pos_of, report) {
            if let Some(dup) = services_out.iter().find(|o: &&ServiceConfig| o.name == s.name) {
                report(
                    name.span(),
                    format!("service {} is defined twice (also at line {})", s.name, dup.pos.line),
                    None,
                );
                continue;
            }
            services_out.push(s);
        }
    }
    out.services = services_out;
    out
}

fn region(
    name: &Spanned<String>,
    raw: RawRegion,
    base: &std::path::Path,
    doc: &Spanned<toml::de::DeValue<'_>>,
    history: usize,
    pos_of: &dyn Fn(usize) -> Pos,
    report: &mut Report<'_>,
) -> Option<RegionConfig> {
    let n = name.get_ref();
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        report(name.span(), format!("region name {n:?} may only use letters, digits, '-', '_' and '.'"), None);
        return None;
    }
    let mut r = RegionConfig {
        name: n.clone(),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        cname: None,
        coordinates: None,
        weight: DEFAULT_WEIGHT,
        priority: DEFAULT_PRIORITY,
        bias_km: 0.0,
        checks: Vec::new(),
        quorum: None,
        load: None,
        capacity: None,
        pos: pos_of(name.span().start),
    };
    for a in raw.addresses.unwrap_or_default() {
        match a.get_ref().parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => r.ipv4.push(v4),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => r.ipv4.push(v4),
                None => r.ipv6.push(v6),
            },
            Err(_) => report(a.span(), format!("regions.{n}.addresses: {:?} is not an IP address", a.get_ref()), None),
        }
    }
    if let Some(c) = raw.cname {
        let text = c.get_ref();
        let fqdn = if text.ends_with('.') { text.clone() } else { format!("{text}.") };
        match Name::parse(&fqdn, None) {
            Ok(name) => r.cname = Some(name),
            Err(e) => report(c.span(), format!("regions.{n}.cname: {e}"), None),
        }
    }
    if r.cname.is_some() && !(r.ipv4.is_empty() && r.ipv6.is_empty()) {
        report(
            name.span(),
            format!("region {n} has both addresses and a cname"),
            Some("a region is answered either by its addresses or by a CNAME to its balancer's name"),
        );
    }
    if r.cname.is_none() && r.ipv4.is_empty() && r.ipv6.is_empty() {
        report(
            name.span(),
            format!("region {n} has no addresses and no cname"),
            Some("add addresses = [\"192.0.2.10\"] or cname = \"lb.example.net.\""),
        );
    }
    if let Some(c) = raw.coordinates {
        match c.get_ref()[..] {
            [lat, lon] if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                r.coordinates = Some((lat, lon))
            }
            _ => report(
                c.span(),
                format!("regions.{n}.coordinates: want [latitude, longitude] in degrees"),
                Some("e.g. coordinates = [51.5, -0.13] for London"),
            ),
        }
    }
    if let Some(w) = raw.weight.and_then(|w| {
        in_range(&w, 0..=MAX_WEIGHT as i64, &format!("regions.{n}.weight"), "use 0 (drained) to 1000000", report)
    }) {
        r.weight = w as u32;
    }
    if let Some(p) = raw.priority.and_then(|p| {
        in_range(&p, 0..=u32::MAX as i64, &format!("regions.{n}.priority"), "use 0 or more; lower is preferred", report)
    }) {
        r.priority = p as u32;
    }
    // NaN fails every range check, so it is reported too.
    if let Some(b) = raw.bias_km.and_then(|b| {
        in_range(&b, -20_000.0..=20_000.0, &format!("regions.{n}.bias_km"), "use -20000 to 20000", report)
    }) {
        r.bias_km = b;
    }
    checks(&mut r, raw.check, raw.checks, raw.quorum, base, doc, history, report);
    if let Some(c) = raw.capacity {
        r.capacity =
            in_range(&c, f64::MIN_POSITIVE..=1e12, &format!("regions.{n}.capacity"), "use a positive number", report);
    }
    if let Some(l) = raw.load {
        let span = l.span();
        r.load = load_source(n, span, l.into_inner(), r.capacity, base, report);
    }
    Some(r)
}

/// Validates `[regions.NAME.load]`.
fn load_source(
    n: &str,
    span: std::ops::Range<usize>,
    raw: RawLoad,
    region_capacity: Option<f64>,
    base: &std::path::Path,
    report: &mut Report<'_>,
) -> Option<crate::load::LoadConfig> {
    use crate::load::SourceKind;
    use crate::load::source::JsonCapacity;
    let f = |k: &str| format!("regions.{n}.load.{k}");
    let mut ok = true;
    let mut bad = |span: std::ops::Range<usize>, msg: String, hint: &str| {
        ok = false;
        report(span, msg, Some(hint));
    };
    let is_web = |u: &str| (u.starts_with("http://") || u.starts_with("https://")) && reqwest::Url::parse(u).is_ok();
    let url = match &raw.url {
        Some(u) if is_web(u.get_ref()) => u.get_ref().clone(),
        Some(u) => {
            bad(
                u.span(),
                format!("{}: {:?} is not an http:// or https:// URL", f("url"), u.get_ref()),
                "e.g. url = \"http://10.0.0.5:8404/stats\"",
            );
            String::new()
        }
        None => {
            bad(span.clone(), format!("{} is missing", f("url")), "add url = \"http://...\"");
            String::new()
        }
    };
    let duration = |v: &Option<Spanned<String>>,
                    key: &str,
                    default: std::time::Duration,
                    bad: &mut dyn FnMut(std::ops::Range<usize>, String, &str)| match v {
        None => default,
        Some(v) => match super::parse_duration(v.get_ref()) {
            Some(d) if !d.is_zero() => d,
            _ => {
                bad(v.span(), format!("{}: {:?} is not a duration", f(key), v.get_ref()), "e.g. \"2s\" or \"500ms\"");
                default
            }
        },
    };
    let interval = duration(&raw.interval, "interval", std::time::Duration::from_secs(2), &mut bad);
    let timeout = duration(&raw.timeout, "timeout", (interval / 2).min(std::time::Duration::from_secs(1)), &mut bad);
    if timeout > interval / 2 {
        let at = raw.timeout.as_ref().map_or(span.clone(), |t| t.span());
        bad(at, format!("{}: must be at most half the interval", f("timeout")), "shorten it or lengthen interval");
    }
    let number_capacity = match raw.capacity.as_ref().map(|c| (c.span(), c.get_ref())) {
        Some((_, RawCapacity::Number(c))) if *c > 0.0 && c.is_finite() => Some(*c),
        Some((s, RawCapacity::Number(_))) => {
            bad(s, format!("{} must be positive", f("capacity")), "e.g. capacity = 1000");
            None
        }
        _ => None,
    };
    let kind_name = raw.kind.get_ref().as_str();
    if let Some(c) =
        raw.capacity.as_ref().filter(|c| matches!(c.get_ref(), RawCapacity::Pointer(_)) && kind_name != "json")
    {
        bad(
            c.span(),
            format!("{}: a {kind_name} source's capacity is a number", f("capacity")),
            "e.g. capacity = 1000",
        );
    }
    let allowed: &[&str] = match kind_name {
        "haproxy" => &["proxy", "server", "capacity"],
        "prometheus" => &["metric", "labels", "capacity"],
        "json" => &["pointer", "current", "capacity"],
        other => {
            bad(
                raw.kind.span(),
                format!("{}: unknown load source {other:?}", f("type")),
                "use one of: haproxy, prometheus, json",
            );
            return None;
        }
    };
    let given: [(&str, Option<std::ops::Range<usize>>); 7] = [
        ("proxy", raw.proxy.as_ref().map(|v| v.span())),
        ("server", raw.server.as_ref().map(|v| v.span())),
        ("metric", raw.metric.as_ref().map(|v| v.span())),
        ("labels", raw.labels.as_ref().map(|v| v.span())),
        ("pointer", raw.pointer.as_ref().map(|v| v.span())),
        ("current", raw.current.as_ref().map(|v| v.span())),
        ("capacity", raw.capacity.as_ref().map(|v| v.span())),
    ];
    for (key, s) in given {
        if let Some(s) = s.filter(|_| !allowed.contains(&key)) {
            bad(
                s,
                format!("{}: {key} is not a key of {kind_name} load sources", f(key)),
                &format!("{kind_name} takes: {}", allowed.join(", ")),
            );
        }
    }
    let required = |v: &Option<Spanned<String>>,
                    key: &str,
                    hint: &str,
                    bad: &mut dyn FnMut(std::ops::Range<usize>, String, &str)|
     -> String {
        match v {
            Some(v) if !v.get_ref().is_empty() => v.get_ref().clone(),
            _ => {
                bad(span.clone(), format!("{} is required for {kind_name} load sources", f(key)), hint);
                String::new()
            }
        }
    };
    let kind = match kind_name {
        "haproxy" => SourceKind::Haproxy {
            proxy: required(&raw.proxy, "proxy", "the frontend or backend name, e.g. proxy = \"www\"", &mut bad),
            server: raw.server.as_ref().map_or("FRONTEND".to_string(), |s| s.get_ref().clone()),
            capacity: number_capacity.or(region_capacity),
        },
        "prometheus" => {
            let metric = required(&raw.metric, "metric", "e.g. metric = \"nginx_connections_active\"", &mut bad);
            let capacity = number_capacity.or(region_capacity);
            if capacity.is_none() {
                bad(
                    span.clone(),
                    format!("{}: a prometheus source needs a capacity", f("capacity")),
                    "set capacity here or on the region",
                );
            }
            SourceKind::Prometheus {
                metric,
                labels: raw.labels.map(|l| l.into_inner()).unwrap_or_default(),
                capacity: capacity.unwrap_or(1.0),
            }
        }
        _ => {
            let capacity = match raw.capacity.as_ref().map(|c| c.get_ref()) {
                Some(RawCapacity::Pointer(p)) => Some(JsonCapacity::Pointer(p.clone())),
                _ => number_capacity.or(region_capacity).map(JsonCapacity::Fixed),
            };
            match (&raw.pointer, &raw.current) {
                (Some(p), None) => SourceKind::Json { value: p.get_ref().clone(), capacity: None },
                (None, Some(c)) if capacity.is_some() => SourceKind::Json { value: c.get_ref().clone(), capacity },
                _ => {
                    bad(
                        span.clone(),
                        format!("regions.{n}.load: a json source needs pointer, or current and a capacity"),
                        "pointer = \"/utilisation\", or current = \"/sessions\" with capacity = \"/limit\" (or a number)",
                    );
                    return None;
                }
            }
        }
    };
    // https: the system's roots, or only the certificates of tls_ca_file.
    let mut tls_ca = Vec::new();
    if let Some(c) = &raw.tls_ca_file {
        if !url.starts_with("https://") {
            bad(c.span(), format!("{}: only for an https:// url", f("tls_ca_file")), "remove it, or use https://");
        }
        match crate::health::probe::http::read_ca_file(&base.join(c.get_ref())) {
            Ok(certs) => tls_ca = certs,
            Err((message, hint)) => bad(c.span(), format!("{}: {message}", f("tls_ca_file")), hint),
        }
    }
    ok.then_some(crate::load::LoadConfig { kind, url, interval, timeout, tls_ca })
}

/// `check` (one) or `checks` (several) and `quorum`.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn checks(
    r: &mut RegionConfig,
    one: Option<Spanned<serde::de::IgnoredAny>>,
    many: Option<Vec<Spanned<serde::de::IgnoredAny>>>,
    quorum: Option<Spanned<i64>>,
    base: &std::path::Path,
    doc: &Spanned<toml::de::DeValue<'_>>,
    history: usize,
    report: &mut Report<'_>,
) {
    let n = r.name.clone();
    if let (Some(c), Some(_)) = (&one, &many) {
        report(
            c.span(),
            format!("region {n} has both check and checks"),
            Some("use [regions.NAME.check] for one check, or [[regions.NAME.checks]] for several"),
        );
        return;
    }
    let mut count = 0;
    let mut tables = Vec::new();
    if one.is_some() {
        tables.extend(super::health::check_table(doc, &n, None).map(|t| (t, format!("regions.{n}.check"))));
    }
    for i in 0..many.map_or(0, |m| m.len()) {
        tables.extend(super::health::check_table(doc, &n, Some(i)).map(|t| (t, format!("regions.{n}.checks[{i}]"))));
    }
    for (table, field) in tables {
        count += 1;
        r.checks.extend(super::health::check(table, &field, base, history, report));
    }
    if let Some(q) = quorum {
        match usize::try_from(*q.get_ref()) {
            Ok(v) if v >= 1 && v <= count => r.quorum = Some(v),
            _ if count == 0 => report(
                q.span(),
                format!("regions.{n}.quorum is set but the region has no checks"),
                Some("add [[regions.NAME.checks]] or remove quorum"),
            ),
            _ => report(
                q.span(),
                format!("regions.{n}.quorum: {} is out of range", q.get_ref()),
                Some(&format!("use 1 to {count} (the number of checks)")),
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn service(
    name: &Spanned<String>,
    raw: RawService,
    names: &[&str],
    regions: &[RegionConfig],
    has_geoip: bool,
    pos_of: &dyn Fn(usize) -> Pos,
    report: &mut Report<'_>,
) -> Option<ServiceConfig> {
    let text = name.get_ref();
    let fqdn = if text.ends_with('.') { text.clone() } else { format!("{text}.") };
    let sname = match Name::parse(&fqdn, None) {
        Ok(n) => n.to_lowercase(),
        Err(e) => {
            report(name.span(), format!("service name {text:?}: {e}"), None);
            return None;
        }
    };
    let field = |f: &str| format!("services.\"{text}\".{f}");
    let members = region_list(raw.regions.get_ref(), names, &field("regions"), report);
    if raw.regions.get_ref().is_empty() {
        report(raw.regions.span(), format!("service {sname} has no regions"), Some("list at least one region"));
    }
    let named: Vec<Spanned<String>> = match raw.policy.get_ref() {
        RawPolicy::One(s) => vec![Spanned::new(raw.policy.span(), s.clone())],
        RawPolicy::Chain(v) => v.clone(),
    };
    if named.is_empty() {
        report(
            raw.policy.span(),
            format!("service {sname} has an empty policy chain"),
            Some(&format!("use one of: {}", policy::NAMES.join(", "))),
        );
    }
    let service_name = sname.to_string();
    let coordinates: Vec<Option<(f64, f64)>> = regions.iter().map(|r| r.coordinates).collect();
    let mut chain = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, entry) in named.iter().enumerate() {
        let s = entry.get_ref().as_str();
        let last = i + 1 == named.len();
        if seen.contains(&s) {
            report(entry.span(), format!("policy {s} appears twice in service {sname}'s chain"), None);
            continue;
        }
        seen.push(s);
        let mut setup = policy::Setup {
            service: &service_name,
            key: text,
            span: entry.span(),
            names,
            coordinates: &coordinates,
            members: &members,
            has_geoip,
            report: &mut *report,
        };
        let Some(p) = policy::configure(s, raw.tables.iter().find(|t| t.name == s), &mut setup) else {
            continue;
        };
        if !last && p.picks_answer() {
            report(
                entry.span(),
                format!("policy {s} picks the answer, so it must come last in service {sname}'s chain"),
                None,
            );
        }
        chain.push(p);
    }
    // A settings table for a policy the chain does not use is almost always a mistake.
    for t in &raw.tables {
        let pname = t.name;
        if !seen.contains(&pname) {
            report(
                t.span.clone(),
                format!("{} is set but service {sname}'s policy does not use {pname}", field(pname)),
                Some(&format!("add \"{pname}\" to the policy chain or remove the table")),
            );
        }
    }

    let mut s = ServiceConfig {
        name: sname.clone(),
        regions: members,
        policy: Chain(chain),
        ttl: DEFAULT_TTL,
        degraded_ttl: None,
        min_healthy: MinHealthy::Count(1),
        when_all_down: AllDown::FailOpen,
        fallback: Vec::new(),
        pos: pos_of(name.span().start),
    };
    let mut ttl = |v: &Option<Spanned<i64>>, f: &str| -> Option<u32> {
        in_range(v.as_ref()?, 0..=2_147_483_647, &field(f), "use seconds, 0 to 2147483647", report).map(|t| t as u32)
    };
    if let Some(t) = ttl(&raw.ttl, "ttl") {
        s.ttl = t;
    }
    s.degraded_ttl = ttl(&raw.degraded_ttl, "degraded_ttl");
    if let Some(m) = raw.min_healthy {
        let ok = match m.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Some(MinHealthy::Count(*n as usize)),
            toml::Value::String(p) => p
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| MinHealthy::Fraction(p / 100.0)),
            _ => None,
        };
        match ok {
            Some(v) => s.min_healthy = v,
            None => report(
                m.span(),
                format!("{}: want a count of regions or a percentage", field("min_healthy")),
                Some("e.g. min_healthy = 2 or min_healthy = \"50%\""),
            ),
        }
    }
    if let Some(w) = raw.when_all_down {
        s.when_all_down = match w.get_ref().as_str() {
            "fail-open" => AllDown::FailOpen,
            "fallback" => AllDown::Fallback,
            "nodata" => AllDown::NoData,
            "servfail" => AllDown::Servfail,
            other => {
                report(
                    w.span(),
                    format!("{}: {other:?} is not a mode", field("when_all_down")),
                    Some("use \"fail-open\", \"fallback\", \"nodata\" or \"servfail\""),
                );
                AllDown::FailOpen
            }
        };
    }
    for f in raw.fallback.iter().flatten() {
        match f.get_ref().parse::<IpAddr>() {
            Ok(a) => s.fallback.push(a),
            Err(_) => report(f.span(), format!("{}: {:?} is not an IP address", field("fallback"), f.get_ref()), None),
        }
    }
    if s.when_all_down == AllDown::Fallback && s.fallback.is_empty() {
        report(
            name.span(),
            format!("service {sname} answers its fallback when all regions are down, but has no fallback addresses"),
            Some("add fallback = [\"192.0.2.99\"]"),
        );
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;

    const BASE: &str = "[regions.a]\naddresses = [\"192.0.2.1\"]\n[regions.b]\naddresses = [\"192.0.2.2\"]\n";

    #[test]
    fn policy_is_a_name_or_a_chain() {
        let one = format!("{BASE}[services.\"x.test\"]\nregions = [\"a\", \"b\"]\npolicy = \"failover\"\n");
        let c = parse(&one, Path::new("/g.toml")).unwrap();
        assert_eq!(c.gslb.services[0].policy.iter().map(|p| p.name()).collect::<Vec<_>>(), ["failover"]);
        let chain =
            format!("{BASE}[services.\"x.test\"]\nregions = [\"a\", \"b\"]\npolicy = [\"failover\", \"weighted\"]\n");
        let c = parse(&chain, Path::new("/g.toml")).unwrap();
        assert_eq!(c.gslb.services[0].policy.iter().map(|p| p.name()).collect::<Vec<_>>(), ["failover", "weighted"]);
        let bad = format!("{BASE}[services.\"x.test\"]\nregions = [\"a\"]\npolicy = [\"failover\", \"fastest\"]\n");
        let e = parse(&bad, Path::new("/g.toml")).unwrap_err();
        assert!(
            e[0].to_string().starts_with("/g.toml:7:23: error: service x.test.: unknown policy \"fastest\""),
            "{}",
            e[0]
        );
    }

    /// Each policy reads and checks its own table; the messages and their places are the
    /// same as when one function read them all.
    #[test]
    fn policy_settings_errors_keep_their_place() {
        let errors = |cfg: &str| -> String {
            let e = parse(&format!("{BASE}{cfg}"), Path::new("/g.toml")).unwrap_err();
            e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        };
        let svc = "[services.\"x.test\"]\nregions = [\"a\", \"b\"]\n";
        let text = errors(&format!("{svc}policy = \"weighted\"\npolcy = 1\n"));
        assert!(text.starts_with("/g.toml:8:1: error: unknown field `polcy`, expected one of `regions`, `policy`, `ttl`, `degraded_ttl`, `min_healthy`, `when_all_down`, `fallback`, `geo`, `nearest`, `latency`, `failover`, `multivalue`, `sticky`"), "{text}");
        let text = errors(&format!("{svc}policy = \"nearest\"\nnearest = {{ default = [\"b\"], x = 1 }}\n"));
        assert!(text.starts_with("/g.toml:8:30: error: unknown field `x`, expected `default`"), "{text}");
        let text = errors(&format!(
            "{svc}policy = [\"geo\", \"latency\", \"failover\", \"sticky\"]\n\
             geo = {{ continents = {{ XX = [\"a\"] }}, default = [\"c\"] }}\n\
             latency = {{ margin_percent = 5000.0 }}\n\
             failover = {{ ties = \"some\" }}\n\
             sticky = {{ ipv4_prefix = 40 }}\n\
             multivalue = {{ count = 2 }}\n"
        ));
        for want in [
            "/g.toml:8:24: error: services.\"x.test\".geo.continents: \"XX\" is not a valid key\n  hint: continent codes",
            "/g.toml:8:49: error: services.\"x.test\".geo.default names unknown region \"c\"",
            "/g.toml:9:30: error: services.\"x.test\".latency.margin_percent: 5000 is out of range\n  hint: use 0 to 1000",
            "/g.toml:10:21: error: services.\"x.test\".failover.ties: \"some\" is not a tie rule",
            "/g.toml:11:26: error: services.\"x.test\".sticky.ipv4_prefix: 40 is out of range\n  hint: use 0 to 32",
            "/g.toml:12:14: error: services.\"x.test\".multivalue is set but service x.test.'s policy does not use multivalue",
        ] {
            assert!(text.contains(want), "want {want:?} in:\n{text}");
        }
    }
}

#[cfg(test)]
mod load_tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::parse;
    use crate::load::SourceKind;
    use crate::load::source::JsonCapacity;

    const REGION: &str = "[regions.fra]\naddresses = [\"192.0.2.10\"]\n";

    fn load(text: &str) -> Result<crate::load::LoadConfig, Vec<String>> {
        parse(&format!("{REGION}{text}"), Path::new("/etc/gslbd/gslbd.toml"))
            .map(|c| c.gslb.regions[0].load.clone().expect("a load source"))
            .map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn sources_with_defaults_and_every_kind() {
        let l = load("[regions.fra.load]\ntype = \"haproxy\"\nurl = \"http://10.0.0.5:8404/stats\"\nproxy = \"www\"\n")
            .unwrap();
        assert_eq!((l.interval, l.timeout), (Duration::from_secs(2), Duration::from_secs(1)));
        assert_eq!(l.fetch_url(), "http://10.0.0.5:8404/stats;csv");
        assert_eq!(l.kind, SourceKind::Haproxy { proxy: "www".into(), server: "FRONTEND".into(), capacity: None });
        let l = load(
            "capacity = 500\n[regions.fra.load]\ntype = \"prometheus\"\nurl = \"http://10.0.0.5/metrics\"\n\
             metric = \"envoy_cx_active\"\nlabels = { cluster = \"api\" }\ninterval = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(l.timeout, Duration::from_secs(1));
        let SourceKind::Prometheus { capacity, labels, .. } = &l.kind else { panic!("{l:?}") };
        assert_eq!((*capacity, labels.get("cluster").map(String::as_str)), (500.0, Some("api")));
        let l =
            load("[regions.fra.load]\ntype = \"json\"\nurl = \"http://x/l\"\ncurrent = \"/s\"\ncapacity = \"/max\"\n")
                .unwrap();
        assert_eq!(
            l.kind,
            SourceKind::Json { value: "/s".into(), capacity: Some(JsonCapacity::Pointer("/max".into())) }
        );
        let l = load("[regions.fra.load]\ntype = \"json\"\nurl = \"http://x/l\"\ncurrent = \"/s\"\ncapacity = 40\n")
            .unwrap();
        assert_eq!(l.kind, SourceKind::Json { value: "/s".into(), capacity: Some(JsonCapacity::Fixed(40.0)) });
        // https, with the system's roots.
        let l =
            load("[regions.fra.load]\ntype = \"json\"\nurl = \"https://lb.example/l\"\npointer = \"/u\"\n").unwrap();
        assert_eq!((l.url.as_str(), l.tls_ca.len()), ("https://lb.example/l", 0));
    }

    #[test]
    fn bad_sources_are_reported_with_their_place() {
        // (table after [regions.fra.load], the start of the error)
        let cases: &[(&str, &str)] = &[
            (
                "type = \"snmp\"\nurl = \"http://x/\"\n",
                "/etc/gslbd/gslbd.toml:4:8: error: regions.fra.load.type: unknown load source",
            ),
            (
                "type = \"haproxy\"\nurl = \"ftp://x/\"\nproxy = \"a\"\n",
                "/etc/gslbd/gslbd.toml:5:7: error: regions.fra.load.url: \"ftp://x/\" is not an http:// or https:// URL",
            ),
            (
                "type = \"json\"\nurl = \"http://x/\"\npointer = \"/u\"\ntls_ca_file = \"ca.pem\"\n",
                "/etc/gslbd/gslbd.toml:7:15: error: regions.fra.load.tls_ca_file: only for an https:// url",
            ),
            (
                "type = \"json\"\nurl = \"https://x/\"\npointer = \"/u\"\ntls_ca_file = \"no-such-ca.pem\"\n",
                "/etc/gslbd/gslbd.toml:7:15: error: regions.fra.load.tls_ca_file: cannot read /etc/gslbd/no-such-ca.pem",
            ),
            (
                "type = \"haproxy\"\nurl = \"http://x/\"\n",
                "/etc/gslbd/gslbd.toml:3:1: error: regions.fra.load.proxy is required",
            ),
            (
                "type = \"haproxy\"\nurl = \"http://x/\"\nproxy = \"a\"\nmetric = \"m\"\n",
                "/etc/gslbd/gslbd.toml:7:10: error: regions.fra.load.metric: metric is not a key of haproxy",
            ),
            (
                "type = \"prometheus\"\nurl = \"http://x/\"\nmetric = \"m\"\n",
                "/etc/gslbd/gslbd.toml:3:1: error: regions.fra.load.capacity: a prometheus source needs a capacity",
            ),
            (
                "type = \"json\"\nurl = \"http://x/\"\n",
                "/etc/gslbd/gslbd.toml:3:1: error: regions.fra.load: a json source needs pointer",
            ),
            (
                "type = \"haproxy\"\nurl = \"http://x/\"\nproxy = \"a\"\ncapacity = \"/max\"\n",
                "/etc/gslbd/gslbd.toml:7:12: error: regions.fra.load.capacity: a haproxy source's capacity is a number",
            ),
            (
                "type = \"json\"\nurl = \"http://x/\"\npointer = \"/u\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n",
                "/etc/gslbd/gslbd.toml:8:11: error: regions.fra.load.timeout: must be at most half",
            ),
            (
                "type = \"json\"\nurl = \"http://x/\"\npointer = \"/u\"\ninterval = \"soon\"\n",
                "/etc/gslbd/gslbd.toml:7:12: error: regions.fra.load.interval",
            ),
        ];
        for (table, want) in cases {
            let errors = load(&format!("[regions.fra.load]\n{table}")).unwrap_err();
            assert!(errors[0].starts_with(want), "{table}: {errors:?}");
        }
        let errors =
            load("capacity = -3\n[regions.fra.load]\ntype = \"json\"\nurl = \"http://x/\"\npointer = \"/u\"\n")
                .unwrap_err();
        assert!(errors[0].contains("regions.fra.capacity: -3 is out of range"), "{errors:?}");
    }
}
