//! `[geoip]`, `[regions.NAME]` and `[services."NAME"]`: the load-balancing part of the
//! configuration, validated into plain values. Cross-checks that need the zones (a service
//! name inside a served zone, no static records at it) happen where both are known
//! (`gslb::Gslb::build`); what is checked here is everything the config alone can tell.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::health::{CheckConfig, HealthConfig};
use super::in_range;
use crate::name::Name;

impl GslbConfig {
    /// The regions that have checks, as the prober runs them.
    pub fn region_checks(&self) -> Vec<crate::health::RegionChecks> {
        self.regions
            .iter()
            .filter(|r| !r.checks.is_empty())
            .map(|r| crate::health::RegionChecks { name: r.name.clone(), checks: r.checks.clone(), quorum: r.quorum })
            .collect()
    }
}

/// A place in the config file, for errors found after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One regional balancer.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionConfig {
    pub name: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// A hostname to answer with a CNAME (a cloud balancer's DNS name), instead of addresses.
    pub cname: Option<Name>,
    /// Latitude, longitude in degrees.
    pub coordinates: Option<(f64, f64)>,
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
    pub pos: Pos,
}

/// One steering step of a service's policy chain.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyConfig {
    Geo(GeoConfig),
    Nearest { default: Vec<usize> },
    Latency { margin_percent: f64, margin_ms: f64 },
    Weighted,
    Failover { weighted_ties: bool },
    MultiValue { count: usize },
    Sticky { ipv4_prefix: u8, ipv6_prefix: u8 },
}

impl PolicyConfig {
    pub fn name(&self) -> &'static str {
        match self {
            PolicyConfig::Geo(_) => "geo",
            PolicyConfig::Nearest { .. } => "nearest",
            PolicyConfig::Latency { .. } => "latency",
            PolicyConfig::Weighted => "weighted",
            PolicyConfig::Failover { .. } => "failover",
            PolicyConfig::MultiValue { .. } => "multivalue",
            PolicyConfig::Sticky { .. } => "sticky",
        }
    }
}

/// The geo policy's map from client location to regions (indices into the config's regions).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoConfig {
    pub nets: Vec<(IpNet, Vec<usize>)>,
    /// `CC-SUB` (ISO 3166-2), upper case.
    pub subdivisions: Vec<(String, Vec<usize>)>,
    pub countries: Vec<(String, Vec<usize>)>,
    pub continents: Vec<(String, Vec<usize>)>,
    pub default: Vec<usize>,
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
    Servfail,
}

/// Fewer healthy regions than this makes the service fail open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinHealthy {
    Count(usize),
    Fraction(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: Name,
    /// Indices into the config's regions, in the order given.
    pub regions: Vec<usize>,
    pub policy: Vec<PolicyConfig>,
    pub ttl: u32,
    pub degraded_ttl: Option<u32>,
    pub min_healthy: MinHealthy,
    pub when_all_down: AllDown,
    pub fallback: Vec<IpAddr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GslbConfig {
    pub geoip: Option<std::path::PathBuf>,
    pub health: HealthConfig,
    pub regions: Vec<RegionConfig>,
    pub services: Vec<ServiceConfig>,
}

pub const DEFAULT_TTL: u32 = 30;
pub const DEFAULT_WEIGHT: u32 = 100;
pub const DEFAULT_PRIORITY: u32 = 100;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    regions: Spanned<Vec<Spanned<String>>>,
    policy: Spanned<RawPolicy>,
    ttl: Option<Spanned<i64>>,
    degraded_ttl: Option<Spanned<i64>>,
    min_healthy: Option<Spanned<toml::Value>>,
    when_all_down: Option<Spanned<String>>,
    fallback: Option<Vec<Spanned<String>>>,
    geo: Option<Spanned<RawGeo>>,
    nearest: Option<Spanned<RawNearest>>,
    latency: Option<Spanned<RawLatency>>,
    failover: Option<Spanned<RawFailover>>,
    multivalue: Option<Spanned<RawMultiValue>>,
    sticky: Option<Spanned<RawSticky>>,
}

type RawMap = BTreeMap<Spanned<String>, Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeo {
    nets: Option<RawMap>,
    subdivisions: Option<RawMap>,
    countries: Option<RawMap>,
    continents: Option<RawMap>,
    default: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNearest {
    default: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    margin_percent: Option<Spanned<f64>>,
    margin_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    ties: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultiValue {
    count: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
}

/// Collects errors as (span, message, hint).
pub(super) type Report<'a> = dyn FnMut(Range<usize>, String, Option<&str>) + 'a;

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];
const POLICIES: &str = "geo, nearest, latency, weighted, failover, multivalue, sticky";

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
    Some(r)
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

fn region_list(items: &[Spanned<String>], names: &[&str], field: &str, report: &mut Report<'_>) -> Vec<usize> {
    let mut out = Vec::new();
    for item in items {
        match names.iter().position(|n| n == item.get_ref()) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => report(item.span(), format!("{field}: region {:?} is listed twice", item.get_ref()), None),
            None => report(
                item.span(),
                format!("{field} names unknown region {:?}", item.get_ref()),
                Some("define it as [regions.NAME] or remove it from the list"),
            ),
        }
    }
    out
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
    // Regions of the pool, by config index: a policy map may only name members.
    let in_pool = |list: Vec<usize>, items: &[Spanned<String>], f: &str, report: &mut Report<'_>| -> Vec<usize> {
        for (i, item) in list.iter().zip(items) {
            if !members.contains(i) {
                report(
                    item.span(),
                    format!("{f}: region {:?} is not in service {sname}'s regions", item.get_ref()),
                    Some("add it to the service's regions list"),
                );
            }
        }
        list
    };

    let steps: Vec<Spanned<String>> = match raw.policy.get_ref() {
        RawPolicy::One(s) => vec![Spanned::new(raw.policy.span(), s.clone())],
        RawPolicy::Chain(v) => v.clone(),
    };
    if steps.is_empty() {
        report(
            raw.policy.span(),
            format!("service {sname} has an empty policy chain"),
            Some(&format!("use one of: {POLICIES}")),
        );
    }
    let mut policy = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let s = step.get_ref().as_str();
        let last = i + 1 == steps.len();
        if seen.contains(&s) {
            report(step.span(), format!("policy {s} appears twice in service {sname}'s chain"), None);
            continue;
        }
        seen.push(s);
        let p = match s {
            "geo" => {
                let g = raw.geo.as_ref().map(|g| g.get_ref());
                let mut geo = GeoConfig::default();
                if let Some(g) = g {
                    let map = |m: &Option<RawMap>,
                               f: &str,
                               report: &mut Report<'_>,
                               key_ok: &dyn Fn(&str) -> Option<String>| {
                        let mut out = Vec::new();
                        for (k, v) in m.iter().flatten() {
                            let Some(key) = key_ok(k.get_ref()) else {
                                report(
                                    k.span(),
                                    format!("{}: {:?} is not a valid key", field(f), k.get_ref()),
                                    Some(match f {
                                        "geo.continents" => "continent codes: AF AN AS EU NA OC SA",
                                        "geo.countries" => "ISO 3166-1 alpha-2 country codes, e.g. GB",
                                        "geo.subdivisions" => "ISO 3166-2 codes, e.g. US-CA",
                                        _ => "CIDR prefixes, e.g. 10.0.0.0/8",
                                    }),
                                );
                                continue;
                            };
                            let list = region_list(v, names, &field(f), report);
                            out.push((key, in_pool(list, v, &field(f), report)));
                        }
                        out
                    };
                    let up = |s: &str| s.to_ascii_uppercase();
                    geo.continents = map(&g.continents, "geo.continents", report, &|k| {
                        CONTINENTS.contains(&up(k).as_str()).then(|| up(k))
                    });
                    geo.countries = map(&g.countries, "geo.countries", report, &|k| {
                        (k.len() == 2 && k.chars().all(|c| c.is_ascii_alphabetic())).then(|| up(k))
                    });
                    geo.subdivisions = map(&g.subdivisions, "geo.subdivisions", report, &|k| {
                        let (c, s) = k.split_once('-')?;
                        (c.len() == 2
                            && (1..=3).contains(&s.len())
                            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                        .then(|| up(k))
                    });
                    let nets =
                        map(&g.nets, "geo.nets", report, &|k| super::parse_net(k).map(|n| n.trunc().to_string()));
                    geo.nets = nets.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect();
                    geo.nets.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
                    if let Some(d) = &g.default {
                        let list = region_list(d, names, &field("geo.default"), report);
                        geo.default = in_pool(list, d, &field("geo.default"), report);
                    }
                }
                let has_location_rules =
                    !(geo.continents.is_empty() && geo.countries.is_empty() && geo.subdivisions.is_empty());
                if has_location_rules && !has_geoip {
                    report(
                        step.span(),
                        format!("service {sname} uses geo by location but no GeoIP database is configured"),
                        Some("set [geoip] database = \"PATH.mmdb\""),
                    );
                }
                if g.is_none() {
                    report(
                        step.span(),
                        format!("service {sname} uses geo but has no [services.\"{text}\".geo] map"),
                        Some("map continents, countries, subdivisions or nets to regions"),
                    );
                }
                PolicyConfig::Geo(geo)
            }
            "nearest" => {
                if !has_geoip {
                    report(
                        step.span(),
                        format!("service {sname} uses nearest but no GeoIP database is configured"),
                        Some("set [geoip] database = \"PATH.mmdb\" (a City database: it has coordinates)"),
                    );
                }
                for &m in &members {
                    if regions[m].coordinates.is_none() {
                        report(
                            step.span(),
                            format!("service {sname} uses nearest but region {} has no coordinates", regions[m].name),
                            Some("add coordinates = [latitude, longitude] to the region"),
                        );
                    }
                }
                let default = match raw.nearest.as_ref().and_then(|n| n.get_ref().default.as_ref()) {
                    Some(d) => {
                        let list = region_list(d, names, &field("nearest.default"), report);
                        in_pool(list, d, &field("nearest.default"), report)
                    }
                    None => Vec::new(),
                };
                PolicyConfig::Nearest { default }
            }
            "latency" => {
                let l = raw.latency.as_ref().map(|l| l.get_ref());
                let mut margin_percent = 10.0;
                let mut margin_ms = 0.0;
                if let Some(p) = l.and_then(|l| l.margin_percent.as_ref()) {
                    margin_percent =
                        in_range(p, 0.0..=1000.0, &field("latency.margin_percent"), "use 0 to 1000", report)
                            .unwrap_or(margin_percent);
                }
                if let Some(m) = l.and_then(|l| l.margin_ms.as_ref()) {
                    margin_ms = in_range(m, 0.0..=60_000.0, &field("latency.margin_ms"), "use 0 to 60000", report)
                        .unwrap_or(margin_ms);
                }
                PolicyConfig::Latency { margin_percent, margin_ms }
            }
            "weighted" => PolicyConfig::Weighted,
            "failover" => {
                let ties = raw.failover.as_ref().and_then(|f| f.get_ref().ties.as_ref());
                let weighted_ties = match ties.map(|t| t.get_ref().as_str()) {
                    None | Some("all") => false,
                    Some("weighted") => true,
                    Some(other) => {
                        if let Some(t) = ties {
                            report(
                                t.span(),
                                format!("{}: {other:?} is not a tie rule", field("failover.ties")),
                                Some(
                                    "use \"all\" (answer every region of the best priority) or \"weighted\" (pick one by weight)",
                                ),
                            );
                        }
                        false
                    }
                };
                PolicyConfig::Failover { weighted_ties }
            }
            "multivalue" => {
                let mut count = 1;
                if let Some(c) = raw.multivalue.as_ref().and_then(|m| m.get_ref().count.as_ref()) {
                    count = in_range(c, 1..=16, &field("multivalue.count"), "use 1 to 16", report)
                        .map_or(count, |c| c as usize);
                }
                PolicyConfig::MultiValue { count }
            }
            "sticky" => {
                let st = raw.sticky.as_ref().map(|s| s.get_ref());
                let mut prefix = |v: Option<&Spanned<i64>>, max: i64, default: u8, f: &str| {
                    v.and_then(|p| in_range(p, 0..=max, &field(f), &format!("use 0 to {max}"), report))
                        .map_or(default, |p| p as u8)
                };
                let ipv4_prefix = prefix(st.and_then(|s| s.ipv4_prefix.as_ref()), 32, 24, "sticky.ipv4_prefix");
                let ipv6_prefix = prefix(st.and_then(|s| s.ipv6_prefix.as_ref()), 128, 56, "sticky.ipv6_prefix");
                PolicyConfig::Sticky { ipv4_prefix, ipv6_prefix }
            }
            other => {
                report(
                    step.span(),
                    format!("service {sname}: unknown policy {other:?}"),
                    Some(&format!("use one of: {POLICIES}")),
                );
                continue;
            }
        };
        if !last && matches!(p, PolicyConfig::Weighted | PolicyConfig::MultiValue { .. } | PolicyConfig::Sticky { .. })
        {
            report(
                step.span(),
                format!("policy {s} picks the answer, so it must come last in service {sname}'s chain"),
                None,
            );
        }
        policy.push(p);
    }
    // A settings table for a policy the chain does not use is almost always a mistake.
    for (present, pname) in [
        (raw.geo.as_ref().map(Spanned::span), "geo"),
        (raw.nearest.as_ref().map(Spanned::span), "nearest"),
        (raw.latency.as_ref().map(Spanned::span), "latency"),
        (raw.failover.as_ref().map(Spanned::span), "failover"),
        (raw.multivalue.as_ref().map(Spanned::span), "multivalue"),
        (raw.sticky.as_ref().map(Spanned::span), "sticky"),
    ] {
        if let Some(sp) = present
            && !seen.contains(&pname)
        {
            report(
                sp,
                format!("{} is set but service {sname}'s policy does not use {pname}", field(pname)),
                Some(&format!("add \"{pname}\" to the policy chain or remove the table")),
            );
        }
    }

    let mut s = ServiceConfig {
        name: sname.clone(),
        regions: members,
        policy,
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
}
