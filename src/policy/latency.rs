//! latency: the region with the lowest smoothed probe RTT from this nameserver. The choice is
//! sticky: another region takes over only when it is better by the configured margin
//! (percent of the current RTT, plus milliseconds), so answers do not flap on noise. The
//! choice is made when health data changes (`gslb::status`), not per query.

use super::Ctx;
use crate::gslb::status::{Candidates, RegionStatus};
use crate::gslb::{RegionId, Service};

#[derive(Debug, Default)]
pub struct Latency {
    pub margin_percent: f64,
    pub margin_ms: f64,
}

/// The service's latency choice among `cands`, given the previous one.
pub fn choose(
    service: &Service,
    cands: &[RegionId],
    regions: &[RegionStatus],
    prev: Option<RegionId>,
) -> Option<RegionId> {
    let l = service.chain.iter().find_map(|s| match s {
        super::Step::Latency(l) => Some(l),
        _ => None,
    })?;
    let rtt = |r: RegionId| regions.get(r as usize).and_then(|s| s.rtt_ms);
    let best = cands.iter().copied().filter_map(|r| Some((r, rtt(r)?))).min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((best, best_rtt)) = best else {
        // No measurements yet: keep the previous choice if still a candidate.
        return prev.filter(|p| cands.contains(p));
    };
    match prev.filter(|p| cands.contains(p)).and_then(|p| Some((p, rtt(p)?))) {
        Some((p, p_rtt)) if p_rtt - best_rtt <= p_rtt * l.margin_percent / 100.0 + l.margin_ms => Some(p),
        _ => Some(best),
    }
}

pub fn apply(ctx: &mut Ctx<'_>, cands: &mut Candidates) {
    // The precomputed choice, if it survived the earlier steps; else the lowest RTT here.
    let choice = ctx.service_status.latency_choice.filter(|c| cands.contains(c)).or_else(|| {
        cands
            .iter()
            .copied()
            .filter_map(|r| Some((r, ctx.status.regions.get(r as usize)?.rtt_ms?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(r, _)| r)
    });
    if let Some(c) = choice {
        cands.clear();
        cands.push(c);
    }
}
