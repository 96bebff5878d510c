//! Shares of answers: what each region of a service is meant to get (its weight, scaled
//! by load when the chain sheds), against what it got, and where a drained region's
//! clients would go. For the admin API and metrics; not the query path.

use super::Gslb;
use super::status::Status;
use crate::region::RegionId;

/// Each candidate (A family) of service `service` with its intended share of answers (0..1):
/// its effective weight, scaled by `shed` as the query path scales it, over the sum. A full
/// region (at or above `high`) gets 0 while another is not full; all weights zero: equal
/// shares.
pub fn intended(gslb: &Gslb, status: &Status, service: usize) -> Vec<(RegionId, f64)> {
    let (Some(s), Some(st)) = (gslb.services.get(service), status.services.get(service)) else {
        return Vec::new();
    };
    let shed = s.chain.watermarks().map(|w| w.for_candidates(&gslb.regions, &status.regions, &st.candidates_a));
    let weights: Vec<(RegionId, f64)> = st
        .candidates_a
        .iter()
        .map(|&r| {
            let w = match (status.regions.get(r as usize), shed) {
                (None, _) => 0,
                (Some(x), None) => x.weight,
                (Some(x), Some(m)) => m.weight(&gslb.regions[r as usize], x),
            };
            (r, f64::from(w))
        })
        .collect();
    let total: f64 = weights.iter().map(|w| w.1).sum();
    let n = weights.len() as f64;
    weights.into_iter().map(|(r, w)| (r, if total > 0.0 { w / total } else { 1.0 / n })).collect()
}

/// The largest actual/intended ratio among regions with an intended share (None without
/// answers): 1 when answers follow the plan; 4 when some region takes four times its share.
/// A region that got answers while intended to get none counts as its share over 1 %.
pub fn skew(rows: &[(f64, f64)]) -> Option<f64> {
    rows.iter()
        .filter(|(_, actual)| *actual > 0.0)
        .map(|&(intended, actual)| actual / intended.max(0.01))
        .max_by(f64::total_cmp)
}

/// Where a region's load would go if it were drained: each other region that takes
/// answers now (up, weight > 0), with its utilisation now and projected.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// A region that would take some of the drained region's answers.
    pub region: RegionId,
    /// Its utilisation now (0..1, may exceed 1); None when its load is unknown.
    pub utilisation: Option<f64>,
    /// Its utilisation once the drained region's share has moved to it; None when unknown.
    pub projected: Option<f64>,
}

/// Projects a drain of `drained`: its load (utilisation x capacity) moves to the regions
/// that remain, in proportion to their effective weights; each one's utilisation rises by
/// its part over its capacity. Capacity is the region's `capacity`, or its configured
/// weight when it has none (weights are then read as relative capacities). A remaining
/// region whose load is unknown has an unknown projection; when the drained region's load is
/// unknown, each remaining region's projection is its utilisation now (a lower bound).
pub fn drain_projection(gslb: &Gslb, status: &Status, drained: RegionId) -> Vec<Projection> {
    let capacity = |r: RegionId| {
        let region = &gslb.regions[r as usize];
        region.capacity.unwrap_or(f64::from(region.weight.max(1)))
    };
    let moved = status.regions.get(drained as usize).and_then(|s| s.utilisation).map(|u| u * capacity(drained));
    let remaining: Vec<(RegionId, f64, Option<f64>)> = status
        .regions
        .iter()
        .enumerate()
        .filter(|&(i, s)| i != drained as usize && s.is_up && s.weight > 0)
        .map(|(i, s)| (i as RegionId, f64::from(s.weight), s.utilisation))
        .collect();
    let total: f64 = remaining.iter().map(|r| r.1).sum();
    remaining
        .into_iter()
        .map(|(r, w, u)| Projection {
            region: r,
            utilisation: u,
            projected: match (u, moved) {
                (Some(u), Some(m)) if total > 0.0 => Some(u + m * (w / total) / capacity(r)),
                // The drained region's load is unknown: it moves some clients, so at least
                // the utilisation now (a region already over the limit stays refused).
                (Some(u), _) => Some(u),
                _ => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_table() {
        // (intended, actual) rows -> skew
        type Case = (&'static [(f64, f64)], Option<f64>);
        let cases: &[Case] = &[
            (&[], None),
            (&[(0.5, 0.0), (0.5, 0.0)], None),
            (&[(0.5, 0.5), (0.3, 0.3), (0.2, 0.2)], Some(1.0)),
            // One region takes four times its share.
            (&[(0.1, 0.4), (0.9, 0.6)], Some(4.0)),
            // Answers for a region meant to get none: over 1 %.
            (&[(0.0, 0.05), (1.0, 0.95)], Some(5.0)),
        ];
        for (rows, want) in cases {
            assert_eq!(skew(rows).map(|s| (s * 100.0).round() / 100.0), *want, "{rows:?}");
        }
    }
}
