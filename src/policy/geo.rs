//! geo: the client's network or location picks regions through an explicit map. The most
//! specific match with a healthy region wins: operator networks (longest prefix first), then
//! subdivision (`US-CA`), country, continent, then the map's default.

use ipnet::IpNet;

use super::{Ctx, narrow};
use crate::config::gslb::GeoConfig;
use crate::geoip::Code;
use crate::gslb::RegionId;
use crate::gslb::status::Candidates;

#[derive(Debug, Default)]
pub struct Geo {
    /// Longest prefix first.
    nets: Vec<(IpNet, Vec<RegionId>)>,
    subdivisions: Vec<(Code<2>, Code<3>, Vec<RegionId>)>,
    countries: Vec<(Code<2>, Vec<RegionId>)>,
    continents: Vec<(Code<2>, Vec<RegionId>)>,
    default: Vec<RegionId>,
}

fn ids(v: &[usize]) -> Vec<RegionId> {
    v.iter().map(|&i| i as RegionId).collect()
}

impl Geo {
    pub fn build(cfg: &GeoConfig) -> Geo {
        let code2 = |s: &str| Code::<2>::new(s);
        Geo {
            nets: cfg.nets.iter().map(|(n, r)| (*n, ids(r))).collect(),
            subdivisions: cfg
                .subdivisions
                .iter()
                .filter_map(|(k, r)| {
                    let (c, s) = k.split_once('-')?;
                    Some((code2(c)?, Code::<3>::new(s)?, ids(r)))
                })
                .collect(),
            countries: cfg.countries.iter().filter_map(|(k, r)| Some((code2(k)?, ids(r)))).collect(),
            continents: cfg.continents.iter().filter_map(|(k, r)| Some((code2(k)?, ids(r)))).collect(),
            default: ids(&cfg.default),
        }
    }

    pub fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
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
