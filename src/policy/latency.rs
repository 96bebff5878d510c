//! latency: the region with the lowest smoothed probe RTT from this nameserver. The choice is
//! sticky: another region takes over only when it is better by the configured margin
//! (percent of the current RTT, plus milliseconds), so answers do not flap on noise. The
//! choice is made when health data changes ([`Policy::rechoose`], from `gslb::status`), not
//! per query.

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, RegionId, Setup};
use crate::diag::in_range;
use crate::region::RegionStatus;

/// `[services."NAME".latency]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    margin_percent: Option<Spanned<f64>>,
    margin_ms: Option<Spanned<f64>>,
}

/// The latency policy: the region with the lowest smoothed probe RTT, changed only past a
/// margin.
#[derive(Debug, Default)]
pub struct Latency {
    /// Relative margin, in percent of the current region's RTT (0 to 1000, default 10).
    pub margin_percent: f64,
    /// Absolute margin, in milliseconds, added to the relative one (0 to 60000, default 0).
    pub margin_ms: f64,
}

impl Configure for Latency {
    const NAME: &'static str = "latency";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Latency> {
        let mut margin_percent = 10.0;
        let mut margin_ms = 0.0;
        if let Some(p) = table.and_then(|l| l.margin_percent.as_ref()) {
            margin_percent = in_range(p, 0.0..=1000.0, &setup.field("latency.margin_percent"), "use 0 to 1000", setup.report)
                .unwrap_or(margin_percent);
        }
        if let Some(m) = table.and_then(|l| l.margin_ms.as_ref()) {
            margin_ms = in_range(m, 0.0..=60_000.0, &setup.field("latency.margin_ms"), "use 0 to 60000", setup.report)
                .unwrap_or(margin_ms);
        }
        Some(Latency { margin_percent, margin_ms })
    }
}

impl Policy for Latency {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        // The choice made on status change, if it survived the earlier policies; else the
        // lowest RTT here.
        let choice = ctx.rechosen.filter(|c| cands.contains(c)).or_else(|| {
            cands
                .iter()
                .copied()
                .filter_map(|r| Some((r, ctx.status.get(r as usize)?.rtt_ms?)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(r, _)| r)
        });
        if let Some(c) = choice {
            cands.clear();
            cands.push(c);
        }
    }

    /// The lowest RTT among `cands`, unless the previous choice is within the margin of it.
    fn rechoose(&self, cands: &[RegionId], status: &[RegionStatus], prev: Option<RegionId>) -> Option<RegionId> {
        let rtt = |r: RegionId| status.get(r as usize).and_then(|s| s.rtt_ms);
        let best = cands.iter().copied().filter_map(|r| Some((r, rtt(r)?))).min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((best, best_rtt)) = best else {
            // No measurements yet: keep the previous choice if still a candidate.
            return prev.filter(|p| cands.contains(p));
        };
        match prev.filter(|p| cands.contains(p)).and_then(|p| Some((p, rtt(p)?))) {
            Some((p, p_rtt)) if p_rtt - best_rtt <= p_rtt * self.margin_percent / 100.0 + self.margin_ms => Some(p),
            _ => Some(best),
        }
    }
}
