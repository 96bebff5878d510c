//! GSLB services and the regions they steer clients to, built from the configuration and
//! checked against the served zones. Immutable: health and operator overrides live in
//! [`status::Status`], rebuilt and swapped on every change.

pub mod shares;
pub mod status;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config::gslb::{AllDown, GslbConfig, MinHealthy};
use crate::geoip::GeoLookup;
use crate::load_error::{LoadError, LoadErrorKind, Location};
use crate::name::Name;
use crate::policy::Chain;
use crate::region::{Region, RegionId};
use crate::rtype;
use crate::zone::ZoneSet;
use crate::zone::store::{Lookup, RRset};

/// One service name and how it steers.
#[derive(Debug)]
pub struct Service {
    /// The service's owner name, lowercased.
    pub name: Name,
    /// Region ids, in the order the config lists them.
    pub regions: Vec<RegionId>,
    /// The policy chain that orders its candidate regions.
    pub chain: Chain,
    /// TTL of its answers in seconds.
    pub ttl: u32,
    /// TTL in seconds outside normal mode; the smaller of this and `ttl` is used.
    pub degraded_ttl: Option<u32>,
    /// Below this many healthy regions the service fails open.
    pub min_healthy: MinHealthy,
    /// What to answer when no region is healthy.
    pub when_all_down: AllDown,
    /// The IPv4 `fallback` addresses as an A RRset, for `when_all_down = "fallback"`; None when
    /// there are none.
    pub fallback_a: Option<RRset>,
    /// The IPv6 `fallback` addresses as an AAAA RRset; None when there are none.
    pub fallback_aaaa: Option<RRset>,
    /// True when some policy reads the client's address: the answer's ECS scope is then the
    /// query's source prefix, else 0.
    pub is_client_dependent: bool,
}

/// Services, regions and the GeoIP database, as configured.
#[derive(Default)]
pub struct Gslb {
    /// Every configured region; a [`RegionId`] is an index here.
    pub regions: Vec<Region>,
    /// Every service, in config order.
    pub services: Vec<Service>,
    by_name: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// Names that exist only because a service is at or below them: the service names'
    /// ancestors (empty non-terminals, RFC 8020), lowercased wire format.
    ancestors: std::collections::HashSet<Box<[u8]>, foldhash::fast::RandomState>,
    /// The `[geoip]` database, if configured.
    pub geo: Option<Arc<dyn GeoLookup>>,
    /// `[health] unknown`: whether regions without a verdict yet are answered. Kept here,
    /// with the regions, so a reload that changes it takes effect with the same snapshot.
    pub unknown_is_up: bool,
}

impl std::fmt::Debug for Gslb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gslb").field("regions", &self.regions).field("services", &self.services).finish_non_exhaustive()
    }
}

fn rrset_of(rt: u16, addrs: &[IpAddr]) -> Option<RRset> {
    let octets: Vec<Vec<u8>> = addrs
        .iter()
        .filter_map(|a| match (a, rt) {
            (IpAddr::V4(v4), rtype::A) => Some(v4.octets().to_vec()),
            (IpAddr::V6(v6), rtype::AAAA) => Some(v6.octets().to_vec()),
            _ => None,
        })
        .collect();
    (!octets.is_empty()).then(|| RRset::new(rt, 0, octets.iter().map(Vec::as_slice)))
}

impl Gslb {
    /// Builds the runtime model and checks it against the zones: every service name inside a
    /// served zone, not under a delegation, and without static records of its own.
    pub fn build(
        cfg: &GslbConfig,
        zones: &ZoneSet,
        geo: Option<Arc<dyn GeoLookup>>,
        config_file: &Path,
    ) -> Result<Gslb, Vec<LoadError>> {
        let mut errors = Vec::new();
        let regions: Vec<Region> = cfg
            .regions
            .iter()
            .map(|r| {
                let addrs: Vec<IpAddr> =
                    r.ipv4.iter().map(|&a| IpAddr::V4(a)).chain(r.ipv6.iter().map(|&a| IpAddr::V6(a))).collect();
                Region {
                    name: r.name.clone(),
                    a: rrset_of(rtype::A, &addrs),
                    aaaa: rrset_of(rtype::AAAA, &addrs),
                    cname: r.cname.as_ref().map(|n| RRset::new(rtype::CNAME, 0, [n.as_wire()])),
                    coordinates: r.coordinates,
                    weight: r.weight,
                    priority: r.priority,
                    bias_km: r.bias_km,
                    capacity: r.capacity,
                }
            })
            .collect();
        let mut gslb = Gslb { regions, geo, unknown_is_up: cfg.health.unknown_is_up, ..Default::default() };
        for (i, s) in cfg.services.iter().enumerate() {
            let at =
                |kind| LoadError { location: Location::at(config_file, s.pos.line as u32, s.pos.col as u32), kind };
            let service = s.name.to_string();
            match zones.find(s.name.as_wire()) {
                None => errors.push(at(LoadErrorKind::ServiceOutsideZones { service })),
                Some(zone) => match zone.lookup(s.name.as_wire()) {
                    Lookup::Delegation { .. } => errors
                        .push(at(LoadErrorKind::ServiceBelowDelegation { service, zone: zone.apex().to_string() })),
                    Lookup::Found(node)
                        if node.rrsets().iter().any(|r| matches!(r.rtype, rtype::A | rtype::AAAA | rtype::CNAME)) =>
                    {
                        errors.push(at(LoadErrorKind::ServiceCollides {
                            service,
                            zone_file: zone.source().to_path_buf(),
                        }))
                    }
                    _ => {}
                },
            }
            let chain = s.policy.clone();
            let is_client_dependent = chain.is_client_dependent();
            gslb.services.push(Service {
                name: s.name.clone(),
                regions: s.regions.iter().map(|&r| r as RegionId).collect(),
                chain,
                ttl: s.ttl,
                degraded_ttl: s.degraded_ttl,
                min_healthy: s.min_healthy,
                when_all_down: s.when_all_down,
                fallback_a: rrset_of(rtype::A, &s.fallback),
                fallback_aaaa: rrset_of(rtype::AAAA, &s.fallback),
                is_client_dependent,
            });
            gslb.by_name.insert(s.name.as_wire().into(), i);
            let wire = s.name.as_wire();
            let mut at = 0;
            while let Some(&len) = wire.get(at).filter(|&&l| l > 0) {
                at += 1 + usize::from(len);
                if wire.len() - at > 1 {
                    gslb.ancestors.insert(wire[at..].into());
                }
            }
        }
        if errors.is_empty() { Ok(gslb) } else { Err(errors) }
    }

    /// The service at exactly this lowercased wire name.
    pub fn service(&self, qname: &[u8]) -> Option<(usize, &Service)> {
        if self.by_name.is_empty() {
            return None;
        }
        let &i = self.by_name.get(qname)?;
        Some((i, &self.services[i]))
    }

    /// Whether this lowercased wire name exists because of a service: the service's own
    /// name or an ancestor of one. Such a name gets NODATA for the types the service does not
    /// answer, never NXDOMAIN, and a wildcard does not cover it.
    pub fn owns_name(&self, qname: &[u8]) -> bool {
        !self.by_name.is_empty() && (self.by_name.contains_key(qname) || self.ancestors.contains(qname))
    }

    /// The id of the region named `name`, if there is one.
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions.iter().position(|r| r.name == name).map(|i| i as RegionId)
    }
}
