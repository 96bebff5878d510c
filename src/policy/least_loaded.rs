//! least-loaded: the candidate(s) with the lowest utilisation. Regions within `margin`
//! (default 0.1) of the lowest are treated as equal and all kept, so two near-equal regions
//! do not flap: the next policy (e.g. `weighted`) splits between them. A region whose load
//! is unknown is neither empty nor full: it is kept beside the least loaded. With no load
//! known at all the list is unchanged.
//!
//! Its settings table is `least-loaded = { margin = 0.1 }`: as for every policy, the table
//! key is the policy's name.

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, RegionId, Setup};
use crate::diag::in_range;
use crate::region::RegionStatus;

/// `[services."NAME".least-loaded]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    margin: Option<Spanned<f64>>,
}

/// The `least-loaded` policy: keeps the candidates whose utilisation is within `margin`
/// of the lowest (regions of unknown load pass through; see the module doc).
#[derive(Debug)]
pub struct LeastLoaded {
    /// Utilisations this close to the lowest (absolute, 0..1) count as equally low, so
    /// near-equal regions do not flap.
    pub margin: f64,
}

impl Configure for LeastLoaded {
    const NAME: &'static str = "least-loaded";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<LeastLoaded> {
        let mut margin = 0.1;
        if let Some(m) = table.and_then(|t| t.margin.as_ref()) {
            margin = in_range(m, 0.0..=10.0, &setup.field("least-loaded.margin"), "use 0 to 10 (utilisation)", setup.report)
                .unwrap_or(margin);
        }
        Some(LeastLoaded { margin })
    }
}

fn utilisation(status: &[RegionStatus], r: RegionId) -> Option<f64> {
    status.get(r as usize).and_then(|s| s.utilisation)
}

impl LeastLoaded {
    fn lowest(&self, status: &[RegionStatus], cands: &[RegionId]) -> Option<f64> {
        cands.iter().filter_map(|&r| utilisation(status, r)).min_by(f64::total_cmp)
    }
}

impl Policy for LeastLoaded {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let status = ctx.status;
        let Some(lowest) = self.lowest(status, cands) else { return };
        cands.retain(|r| utilisation(status, *r).is_none_or(|u| u <= lowest + self.margin));
    }

    fn notes(&self, status: &[RegionStatus], before: &[RegionId]) -> Vec<(RegionId, String)> {
        let lowest = self.lowest(status, before);
        before
            .iter()
            .map(|&r| {
                let note = match (utilisation(status, r), lowest) {
                    (None, _) => "load unknown: kept".to_string(),
                    (Some(u), Some(l)) if u <= l + self.margin => {
                        format!("utilisation {u:.2} within margin {} of the lowest {l:.2}: kept", self.margin)
                    }
                    (Some(u), Some(l)) => format!("utilisation {u:.2} above the lowest {l:.2} + margin {}: dropped", self.margin),
                    (Some(u), None) => format!("utilisation {u:.2}"),
                };
                (r, note)
            })
            .collect()
    }
}
