//! nearest: the healthy region closest to the client by great-circle distance, less each
//! region's bias. Clients the database cannot place go to the configured default.

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, RegionId, Setup, narrow};

/// `[services."NAME".nearest]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    default: Option<Vec<Spanned<String>>>,
}

/// The nearest policy: the region closest to the client's GeoIP location, less its bias.
#[derive(Debug, Default)]
pub struct Nearest {
    /// Regions for clients the database cannot place (`nearest.default`); empty keeps all
    /// candidates.
    pub default: Vec<RegionId>,
}

impl Configure for Nearest {
    const NAME: &'static str = "nearest";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Nearest> {
        if !setup.has_geoip {
            let message = format!("service {} uses nearest but no GeoIP database is configured", setup.service);
            setup.error(message, Some("set [geoip] database = \"PATH.mmdb\" (a City database: it has coordinates)"));
        }
        for &m in setup.members {
            if setup.coordinates[m].is_none() {
                let message =
                    format!("service {} uses nearest but region {} has no coordinates", setup.service, setup.names[m]);
                setup.error(message, Some("add coordinates = [latitude, longitude] to the region"));
            }
        }
        let default = match table.and_then(|t| t.default.as_ref()) {
            Some(d) => setup.regions(d, "nearest.default"),
            None => Vec::new(),
        };
        Some(Nearest { default })
    }
}

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in km between two (latitude, longitude) points in degrees
/// (haversine formula).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

impl Policy for Nearest {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn is_client_dependent(&self) -> bool {
        true
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let Some(here) = ctx.client.location().and_then(|l| l.coordinates) else {
            narrow(cands, &self.default);
            return;
        };
        let regions = ctx.regions;
        let best = cands
            .iter()
            .copied()
            .filter_map(|r| {
                let region = &regions[r as usize];
                Some((r, distance_km(here, region.coordinates?) - region.bias_km))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((r, _)) = best {
            cands.clear();
            cands.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_values() {
        let london = (51.5, -0.13);
        let washington = (38.9, -77.0);
        let singapore = (1.35, 103.8);
        // Reference great-circle distances, within 1 %.
        for (a, b, km) in
            [(london, washington, 5_900.0), (london, singapore, 10_880.0), (washington, singapore, 15_550.0)]
        {
            let d = distance_km(a, b);
            assert!((d - km).abs() / km < 0.01, "{d} vs {km}");
            assert!((distance_km(b, a) - d).abs() < 1e-6);
        }
        assert_eq!(distance_km(london, london), 0.0);
    }
}
