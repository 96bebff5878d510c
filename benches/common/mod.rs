//! What both benchmarks share: the timing loop.

use std::time::Instant;

/// Nanoseconds per call of `f`: `runs` runs of `iters` calls each (`f` gets the call's
/// index), the median run.
pub fn median_ns(iters: u32, runs: usize, mut f: impl FnMut(u32)) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[runs / 2]
}
