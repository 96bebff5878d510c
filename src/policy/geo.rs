//! geo: the client's network or location picks regions through an explicit map. The most
//! specific match with a healthy region wins: operator networks (longest prefix first), then
//! subdivision (`US-CA`), country, continent, then the map's default.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, RegionId, Setup, narrow};
use crate::geoip::Code;

type RawMap = BTreeMap<Spanned<String>, Vec<Spanned<String>>>;

/// `[services."NAME".geo]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    nets: Option<RawMap>,
    subdivisions: Option<RawMap>,
    countries: Option<RawMap>,
    continents: Option<RawMap>,
    default: Option<Vec<Spanned<String>>>,
}

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// The geo policy, built from `[services."NAME".geo]`: explicit maps from networks,
/// subdivisions, countries and continents to regions, and a default.
#[derive(Debug, Default)]
pub struct Geo {
    /// Longest prefix first.
    nets: Vec<(IpNet, Vec<RegionId>)>,
    subdivisions: Vec<(Code<2>, Code<3>, Vec<RegionId>)>,
    countries: Vec<(Code<2>, Vec<RegionId>)>,
    continents: Vec<(Code<2>, Vec<RegionId>)>,
    default: Vec<RegionId>,
}

/// One map of the table: keys checked by `key_ok` (which returns the key normalized), each
/// key's regions resolved.
fn map<K>(
    m: &Option<RawMap>,
    f: &str,
    setup: &mut Setup<'_, '_>,
    key_ok: &dyn Fn(&str) -> Option<K>,
) -> Vec<(K, Vec<RegionId>)> {
    let mut out = Vec::new();
    for (k, v) in m.iter().flatten() {
        let Some(key) = key_ok(k.get_ref()) else {
            let field = setup.field(f);
            (setup.report)(
                k.span(),
                format!("{field}: {:?} is not a valid key", k.get_ref()),
                Some(match f {
                    "geo.continents" => "continent codes: AF AN AS EU NA OC SA",
                    "geo.countries" => "ISO 3166-1 alpha-2 country codes, e.g. GB",
                    "geo.subdivisions" => "ISO 3166-2 codes, e.g. US-CA",
                    _ => "CIDR prefixes, e.g. 10.0.0.0/8",
                }),
            );
            continue;
        };
        out.push((key, setup.regions(v, f)));
    }
    out
}

impl Configure for Geo {
    const NAME: &'static str = "geo";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Geo> {
        let mut geo = Geo::default();
        if let Some(g) = table {
            let up = |s: &str| s.to_ascii_uppercase();
            geo.continents = map(&g.continents, "geo.continents", setup, &|k| {
                CONTINENTS.contains(&up(k).as_str()).then(|| Code::<2>::new(&up(k))).flatten()
            });
            geo.countries = map(&g.countries, "geo.countries", setup, &|k| {
                (k.len() == 2 && k.chars().all(|c| c.is_ascii_alphabetic())).then(|| Code::<2>::new(&up(k))).flatten()
            });
            geo.subdivisions = map(&g.subdivisions, "geo.subdivisions", setup, &|k| {
                let (c, s) = k.split_once('-')?;
                let ok = c.len() == 2
                    && (1..=3).contains(&s.len())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                // A key valid by these rules whose codes do not parse is dropped, unreported.
                ok.then(|| Code::<2>::new(&up(c)).zip(Code::<3>::new(&up(s))))
            })
            .into_iter()
            .filter_map(|(k, v)| k.map(|(c, s)| (c, s, v)))
            .collect();
            geo.nets = map(&g.nets, "geo.nets", setup, &|k| crate::addr::parse_net(k).map(|n| n.trunc()));
            geo.nets.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
            if let Some(d) = &g.default {
                geo.default = setup.regions(d, "geo.default");
            }
        }
        let has_location_rules =
            !(geo.continents.is_empty() && geo.countries.is_empty() && geo.subdivisions.is_empty());
        if has_location_rules && !setup.has_geoip {
            let message = format!("service {} uses geo by location but no GeoIP database is configured", setup.service);
            setup.error(message, Some("set [geoip] database = \"PATH.mmdb\""));
        }
        if table.is_none() {
            let message = format!("service {} uses geo but has no [services.\"{}\".geo] map", setup.service, setup.key);
            setup.error(message, Some("map continents, countries, subdivisions or nets to regions"));
        }
        Some(geo)
    }
}

impl Policy for Geo {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn is_client_dependent(&self) -> bool {
        true
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let addr = ctx.client.addr;
        for (net, regions) in &self.nets {
            if net.contains(&addr) && narrow(cands, regions) {
                return;
            }
        }
        if let Some(loc) = ctx.client.location().copied() {
            if let Some(sub) = loc.subdivision {
                for (c, s, regions) in &self.subdivisions {
                    if *c == loc.country && *s == sub && narrow(cands, regions) {
                        return;
                    }
                }
            }
            for (c, regions) in &self.countries {
                if *c == loc.country && narrow(cands, regions) {
                    return;
                }
            }
            for (c, regions) in &self.continents {
                if *c == loc.continent && narrow(cands, regions) {
                    return;
                }
            }
        }
        narrow(cands, &self.default);
    }
}
