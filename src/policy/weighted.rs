//! weighted: one region, chosen at random in proportion to its effective weight (configured,
//! or the operator's). Random numbers from `fastrand`'s per-thread generator: no lock, no
//! shared cache line.

use smallvec::SmallVec;

use super::{Candidates, Configure, Ctx, Policy, Setup};

/// The weighted policy: one region at random, in proportion to its effective weight.
#[derive(Debug, Default)]
pub struct Weighted;

impl Configure for Weighted {
    const NAME: &'static str = "weighted";
    const HAS_TABLE: bool = false;
    type Table = ();

    fn configure(_: Option<&()>, _: &mut Setup<'_, '_>) -> Option<Weighted> {
        Some(Weighted)
    }
}

impl Policy for Weighted {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn picks_answer(&self) -> bool {
        true
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        pick(ctx, cands);
    }
}

/// A random number below `n` (0 when `n` is 0).
pub fn random_below(n: u64) -> u64 {
    if n == 0 { 0 } else { fastrand::u64(..n) }
}

/// Picks one index of `weights` with probability proportional to its weight (all-zero
/// weights: uniformly). Cumulative sums and a binary search. Every index can be chosen
/// however many there are: the sums live inline up to 16 weights and on the heap beyond
/// (a fixed array here once left regions 17 and up unanswered).
pub fn weighted_index(weights: &[u32]) -> usize {
    let mut cumulative: SmallVec<[u64; 16]> = SmallVec::with_capacity(weights.len());
    let mut total = 0u64;
    for &w in weights {
        total += u64::from(w);
        cumulative.push(total);
    }
    if total == 0 {
        return random_below(weights.len() as u64) as usize;
    }
    let r = random_below(total);
    cumulative.partition_point(|&c| c <= r)
}

/// One region, chosen at random in proportion to its effective weight.
pub fn pick(ctx: &mut Ctx<'_>, cands: &mut Candidates) {
    let weights: SmallVec<[u32; 8]> = cands.iter().map(|&r| ctx.weight(r)).collect();
    let i = weighted_index(&weights);
    let chosen = cands[i.min(cands.len() - 1)];
    cands.clear();
    cands.push(chosen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_index_follows_weights() {
        let weights = [50, 30, 20];
        let mut counts = [0usize; 3];
        let n = 100_000;
        for _ in 0..n {
            counts[weighted_index(&weights)] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let share = counts[i] as f64 / n as f64 * 100.0;
            assert!((share - w as f64).abs() < 1.0, "region {i}: {share:.2}% vs {w}%");
        }
    }

    #[test]
    fn zero_weight_is_never_chosen_beside_positive_weights() {
        for _ in 0..10_000 {
            assert_ne!(weighted_index(&[0, 5, 0, 1]), 0);
            assert_ne!(weighted_index(&[0, 5, 0, 1]), 2);
        }
        // All zero: every one in turn.
        let mut seen = [false; 3];
        for _ in 0..1000 {
            seen[weighted_index(&[0, 0, 0])] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn every_one_of_many_equal_weights_is_chosen() {
        // 20 and 64 regions of equal weight: each near 1/n of the picks (this failed for
        // every index past 15 when the sums lived in a fixed array of 16).
        for n in [20usize, 64] {
            let weights = vec![100u32; n];
            let mut counts = vec![0usize; n];
            let picks = 1000 * n;
            for _ in 0..picks {
                counts[weighted_index(&weights)] += 1;
            }
            assert!(counts.iter().all(|&c| (700..1300).contains(&c)), "{n} regions: {counts:?}");
        }
        // A heavy last region among many light ones takes its share.
        let mut weights = vec![1u32; 40];
        weights[39] = 39;
        let last = (0..10_000).filter(|_| weighted_index(&weights) == 39).count();
        assert!((4_500..5_500).contains(&last), "{last}");
    }

    #[test]
    fn random_below_is_uniform_enough() {
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[random_below(7) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }
}
