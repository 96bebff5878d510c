//! Who probes which region, and the one verdict every instance computes from the probers'
//! published observations. Pure: members and observations in, duties and verdicts out.
//!
//! - Duties: each region is probed by `k` live members chosen by rendezvous hashing of
//!   (region, instance), one per distinct site first (highest score first), then the
//!   remaining highest scores. Every member computes the same choice from the same member
//!   list, so the number of probes per region stays `k` however many instances run, and
//!   when a member leaves only its own duties move.
//! - Verdict: the region's verdict is the configured rule over the *fresh* observations:
//!   those of members currently chosen for the region, published while their lease lives,
//!   with a verdict other than `unknown`. The rule needs a majority of the chosen probers
//!   to have reported ([`needed`]); with fewer, an instance uses its own probes (fallback).
//! - RTT (for the latency policy): the median of the fresh observers' smoothed RTTs, so all
//!   instances steer by the same figure.

use serde::{Deserialize, Serialize};

use crate::config::cluster::VerdictRule;
use crate::health::Verdict;

/// What a prober publishes for a region (after its own rise/fall), at
/// `P/health/REGION/INSTANCE`, attached to its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The prober's verdict after its own rise/fall: `healthy`, `unhealthy` or `unknown`.
    pub state: String,
    /// Why its last probe failed, if it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its smoothed probe RTT, milliseconds.
    #[serde(default)]
    pub rtt_ewma_ms: Option<f64>,
}

impl Observation {
    /// Refuses what gslbd never writes: a state other than healthy, unhealthy or unknown,
    /// an RTT that is negative or not finite.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.state.as_str(), "healthy" | "unhealthy" | "unknown") {
            return Err(format!("state {:?} is not healthy, unhealthy or unknown", self.state));
        }
        match self.rtt_ewma_ms {
            Some(r) if !(r.is_finite() && r >= 0.0) => Err(format!("rtt_ewma_ms {r} is not a duration")),
            _ => Ok(()),
        }
    }

    /// The observation's verdict (`unknown` for anything else written there).
    pub fn verdict(&self) -> Verdict {
        match self.state.as_str() {
            "healthy" => Verdict::Healthy,
            "unhealthy" => Verdict::Unhealthy,
            _ => Verdict::Unknown,
        }
    }
}

/// FNV-1a 64 of `region \0 instance`, then a finalizer so close names spread: stable across
/// builds and machines (all members must compute the same scores).
fn score(region: &str, instance: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in region.bytes().chain([0]).chain(instance.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The members (instance, site) chosen to probe `region`: `k` of them, distinct sites
/// first. Ordered by preference.
pub fn probers<'m>(region: &str, members: &'m [(String, String)], k: usize) -> Vec<&'m str> {
    let mut ranked: Vec<&(String, String)> = members.iter().collect();
    ranked.sort_by(|a, b| score(region, &b.0).cmp(&score(region, &a.0)).then_with(|| a.0.cmp(&b.0)));
    ranked.dedup_by(|a, b| a.0 == b.0);
    let mut chosen: Vec<&(String, String)> = Vec::new();
    for m in &ranked {
        if chosen.len() < k && !chosen.iter().any(|c| c.1 == m.1) {
            chosen.push(m);
        }
    }
    for m in &ranked {
        if chosen.len() < k && !chosen.iter().any(|c| c.0 == m.0) {
            chosen.push(m);
        }
    }
    chosen.into_iter().map(|m| m.0.as_str()).collect()
}

/// Fresh observations a verdict needs: a majority of the probers chosen for the region.
pub fn needed(chosen: usize) -> usize {
    chosen / 2 + 1
}

/// The rule over fresh verdicts (none Unknown): Healthy or Unhealthy.
pub fn decide(rule: VerdictRule, fresh: &[Verdict]) -> Verdict {
    let n = fresh.len();
    let up = fresh.iter().filter(|v| **v == Verdict::Healthy).count();
    let is_up = match rule {
        // Out only when most observers agree it failed (powergslb #11): a tie keeps it, so
        // with two probers one broken path to a region cannot take it out everywhere.
        VerdictRule::Majority => 2 * (n - up) <= n,
        VerdictRule::AnyUp => up >= 1,
        VerdictRule::AllUp => up == n && n > 0,
        VerdictRule::UpIfMoreThan(pct) => (up as f64) * 100.0 > pct * n as f64,
    };
    if is_up { Verdict::Healthy } else { Verdict::Unhealthy }
}

/// The median of the observers' smoothed RTTs (the mean of the middle two for an even
/// count); None without any.
pub fn median_rtt(mut rtts: Vec<f64>) -> Option<f64> {
    rtts.retain(|r| r.is_finite());
    if rtts.is_empty() {
        return None;
    }
    rtts.sort_by(f64::total_cmp);
    let mid = rtts.len() / 2;
    Some(if rtts.len() % 2 == 1 { rtts[mid] } else { (rtts[mid - 1] + rtts[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    fn members(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(i, s)| (i.to_string(), s.to_string())).collect()
    }

    #[test]
    fn decide_table() {
        let cases: &[(VerdictRule, &[Verdict], Verdict)] = &[
            (VerdictRule::Majority, &[Healthy, Healthy, Unhealthy], Healthy),
            // A tie keeps the region: one of two probers cannot take it out.
            (VerdictRule::Majority, &[Healthy, Unhealthy], Healthy),
            (VerdictRule::Majority, &[Unhealthy, Healthy, Unhealthy, Healthy], Healthy),
            (VerdictRule::Majority, &[Unhealthy, Unhealthy, Healthy], Unhealthy),
            (VerdictRule::Majority, &[Unhealthy], Unhealthy),
            (VerdictRule::Majority, &[Unhealthy, Unhealthy], Unhealthy),
            (VerdictRule::AnyUp, &[Unhealthy, Unhealthy, Healthy], Healthy),
            (VerdictRule::AnyUp, &[Unhealthy], Unhealthy),
            (VerdictRule::AllUp, &[Healthy, Healthy, Unhealthy], Unhealthy),
            (VerdictRule::AllUp, &[Healthy, Healthy], Healthy),
            (VerdictRule::UpIfMoreThan(18.0), &[Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy], Healthy),
            (VerdictRule::UpIfMoreThan(20.0), &[Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy], Unhealthy),
        ];
        for &(rule, fresh, want) in cases {
            assert_eq!(decide(rule, fresh), want, "{rule:?} {fresh:?}");
        }
    }

    #[test]
    fn k_probers_on_distinct_sites_first_and_stable() {
        let m = members(&[("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")]);
        for region in ["eu", "us", "ap", "sa", "af"] {
            let chosen = probers(region, &m, 3);
            assert_eq!(chosen.len(), 3, "{region}");
            let mut sites: Vec<&str> =
                chosen.iter().map(|c| m.iter().find(|x| x.0 == *c).unwrap().1.as_str()).collect();
            sites.sort();
            assert_eq!(sites, ["x", "y", "z"], "{region}: one per site first");
            // Any member computes the same, whatever order it lists members in.
            let mut reversed = m.clone();
            reversed.reverse();
            assert_eq!(probers(region, &reversed, 3), chosen);
        }
        assert_eq!(probers("eu", &m[..2], 3).len(), 2, "fewer members than k: all of them");
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_duties() {
        let m: Vec<(String, String)> = (0..8).map(|i| (format!("n{i}"), format!("s{i}"))).collect();
        let regions: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
        let gone = "n3";
        let rest: Vec<(String, String)> = m.iter().filter(|x| x.0 != gone).cloned().collect();
        for r in &regions {
            let before = probers(r, &m, 3);
            let after = probers(r, &rest, 3);
            let kept: Vec<&&str> = before.iter().filter(|p| **p != gone).collect();
            assert!(kept.iter().all(|p| after.contains(p)), "{r}: {before:?} -> {after:?}");
        }
    }

    #[test]
    fn duties_spread_over_members() {
        let m: Vec<(String, String)> = (0..5).map(|i| (format!("n{i}"), "one-site".to_string())).collect();
        let mut load = std::collections::HashMap::new();
        for i in 0..300 {
            for p in probers(&format!("region-{i}"), &m, 3) {
                *load.entry(p).or_insert(0) += 1;
            }
        }
        // 900 duties over 5 members: 180 each on average.
        assert!(load.values().all(|&n| (130..=230).contains(&n)), "{load:?}");
    }

    #[test]
    fn needed_and_median() {
        assert_eq!((needed(1), needed(2), needed(3), needed(5)), (1, 2, 2, 3));
        assert_eq!(median_rtt(vec![30.0, 10.0, 20.0]), Some(20.0));
        assert_eq!(median_rtt(vec![10.0, 20.0]), Some(15.0));
        assert_eq!(median_rtt(vec![]), None);
    }
}
