//! shed: takes new clients away from regions as they fill up (NS1's shed_load filter).
//! Below `low` (default 0.7) a region keeps its weight; between `low` and `high` (default
//! 0.9) its weight falls in proportion, to zero at `high`; at or above `high` it gets no new
//! clients while any candidate is below `high`. It never empties the list: when every
//! candidate is full they all stay (weights scaled alike).
//!
//! Free capacity: when every candidate has a `capacity` and a known utilisation, the weights
//! `shed` hands on are the regions' free capacity, `capacity x (1 - utilisation)` (at least 1
//! while below 1), times the operator's share of the configured weight (so a drain or a
//! weight override still acts), then scaled by the watermarks as above. Weighted answers
//! then follow free capacity instead of fixed weights.
//!
//! A region whose load is unknown (no source, no recent reading) is neither empty nor full:
//! it is kept at its weight. The weights the policies after it read ([`Ctx::weight`], e.g.
//! `weighted`) are the scaled ones. The utilisation it reads is already smoothed and
//! release-limited off the query path (`crate::load`), which is where its stability comes
//! from.

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, RegionId, Setup};
use crate::diag::in_range;
use crate::region::{Region, RegionStatus};

/// `[services."NAME".shed]` or `shed = { low = 0.7, high = 0.9 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    low: Option<Spanned<f64>>,
    high: Option<Spanned<f64>>,
}

/// The watermarks, as `Ctx` carries them to the policies after `shed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermarks {
    /// Utilisation (0..1) below which a region keeps its full weight (default 0.7).
    pub low: f64,
    /// Utilisation at and above which a region gets no new clients while any candidate is
    /// below it (default 0.9); between `low` and `high` its weight falls in proportion.
    pub high: f64,
    /// Set per query by `shed`: every candidate has a capacity and a known utilisation, so
    /// weights follow free capacity.
    pub by_capacity: bool,
}

impl Watermarks {
    /// The fraction of its weight a region at utilisation `u` keeps.
    pub fn factor(&self, u: f64) -> f64 {
        if u <= self.low {
            1.0
        } else if u >= self.high {
            0.0
        } else {
            (self.high - u) / (self.high - self.low)
        }
    }

    /// `weight` scaled for utilisation `u` (unknown: unchanged). A region inside the band
    /// keeps a weight of at least 1, so only `high` stops it.
    pub fn scale(&self, weight: u32, u: Option<f64>) -> u32 {
        match u {
            None => weight,
            Some(u) => {
                let f = self.factor(u);
                if f >= 1.0 || weight == 0 {
                    weight
                } else if f <= 0.0 {
                    0
                } else {
                    ((f64::from(weight) * f).round() as u32).max(1)
                }
            }
        }
    }

    /// These watermarks for the candidates `cands`: `by_capacity` when every one has a
    /// capacity and a known utilisation.
    pub fn for_candidates(self, regions: &[Region], status: &[RegionStatus], cands: &[RegionId]) -> Watermarks {
        let by_capacity = cands.iter().all(|&r| {
            regions.get(r as usize).is_some_and(|x| x.capacity.is_some()) && utilisation(status, r).is_some()
        });
        Watermarks { by_capacity, ..self }
    }

    /// The weight a region gets after `shed` (see the module doc).
    pub fn weight(&self, region: &Region, status: &RegionStatus) -> u32 {
        let base = match (self.by_capacity, region.capacity, status.utilisation) {
            (true, Some(c), Some(u)) if region.weight > 0 => {
                let free = (c * (1.0 - u)).max(0.0);
                let operator = f64::from(status.weight) / f64::from(region.weight);
                let w = (free * operator).round().min(f64::from(u32::MAX)) as u32;
                if free > 0.0 && status.weight > 0 { w.max(1) } else { w }
            }
            _ => status.weight,
        };
        self.scale(base, status.utilisation)
    }

    fn is_full(&self, u: Option<f64>) -> bool {
        u.is_some_and(|u| u >= self.high)
    }
}

/// The `shed` policy: weights reduced between the watermarks, regions above `high`
/// left out while others are below it, never an empty list.
#[derive(Debug)]
pub struct Shed(pub Watermarks);

impl Configure for Shed {
    const NAME: &'static str = "shed";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Shed> {
        let mut w = Watermarks { low: 0.7, high: 0.9, by_capacity: false };
        if let Some(l) = table.and_then(|t| t.low.as_ref()) {
            w.low = in_range(l, 0.0..=10.0, &setup.field("shed.low"), "use 0 to 10 (1 = at capacity)", setup.report)
                .unwrap_or(w.low);
        }
        if let Some(h) = table.and_then(|t| t.high.as_ref()) {
            w.high = in_range(h, 0.0..=10.0, &setup.field("shed.high"), "use 0 to 10 (1 = at capacity)", setup.report)
                .unwrap_or(w.high);
        }
        if w.low >= w.high {
            let message = format!("{}: low {} must be below high {}", setup.field("shed"), w.low, w.high);
            setup.error(message, Some("e.g. shed = { low = 0.7, high = 0.9 }"));
            return None;
        }
        Some(Shed(w))
    }
}

fn utilisation(status: &[RegionStatus], r: RegionId) -> Option<f64> {
    status.get(r as usize).and_then(|s| s.utilisation)
}

impl Policy for Shed {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let w = self.0;
        let status = ctx.status;
        if cands.iter().any(|&r| !w.is_full(utilisation(status, r))) {
            cands.retain(|r| !w.is_full(utilisation(status, *r)));
        }
        ctx.shed = Some(w.for_candidates(ctx.regions, status, cands));
    }

    fn watermarks(&self) -> Option<Watermarks> {
        Some(self.0)
    }

    fn notes(&self, status: &[RegionStatus], before: &[RegionId]) -> Vec<(RegionId, String)> {
        let w = self.0;
        // (With free capacity the base weight differs; the factor is the same, and the
        // weights used show in /v1/status as intended shares.)
        let any_below = before.iter().any(|&r| !w.is_full(utilisation(status, r)));
        before
            .iter()
            .map(|&r| {
                let weight = status.get(r as usize).map_or(0, |s| s.weight);
                let note = match utilisation(status, r) {
                    None => "load unknown: kept at its weight".to_string(),
                    Some(u) if w.is_full(Some(u)) && any_below => {
                        format!("utilisation {u:.2} >= high {}: no new clients", w.high)
                    }
                    Some(u) if w.is_full(Some(u)) => {
                        format!("utilisation {u:.2} >= high {}, but every candidate is full: kept", w.high)
                    }
                    Some(u) if u > w.low => format!(
                        "utilisation {u:.2} between low {} and high {}: weight x {:.2} (configured {weight} -> {})",
                        w.low,
                        w.high,
                        w.factor(u),
                        w.scale(weight, Some(u))
                    ),
                    Some(u) => format!("utilisation {u:.2} <= low {}: full weight {weight}", w.low),
                };
                (r, note)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_and_scale_table() {
        let w = Watermarks { low: 0.7, high: 0.9, by_capacity: false };
        // (utilisation, weight, scaled weight)
        let cases: &[(Option<f64>, u32, u32)] = &[
            (None, 50, 50),
            (Some(0.0), 50, 50),
            (Some(0.7), 50, 50),
            (Some(0.8), 50, 25),
            (Some(0.85), 40, 10),
            (Some(0.899), 50, 1),
            (Some(0.9), 50, 0),
            (Some(1.7), 50, 0),
            (Some(0.8), 0, 0),
        ];
        for &(u, weight, want) in cases {
            assert_eq!(w.scale(weight, u), want, "{u:?} {weight}");
        }
    }
}
