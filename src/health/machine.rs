//! The rise/fall state machine of one check: pure, no clock, no I/O.
//!
//! A check starts [`Verdict::Unknown`] on purpose: before any probe has answered we know
//! nothing, and what "unknown" means for answers is the operator's choice (`[health]
//! unknown`), not this machine's. The first verdict needs the same evidence as any later
//! change: `rise` consecutive successes for healthy, `fall` consecutive failures for
//! unhealthy, so one lucky (or lost) probe after a restart decides nothing.
//!
//! An optional window rule ([`Window`]: `window = W`, `window_failures = F`) also takes a
//! check down when at least F of its last W probes failed, consecutive or not: an endpoint
//! that fails two probes of every three never reaches `fall` in a row, yet a third of real
//! requests would fail. Coming back still takes `rise` consecutive successes.
//!
//! A machine can start from what is already known instead of `Unknown`: [`Machine::seeded`]
//! (a region's last verdict, after a reload that changed the check or a restart) and
//! [`Machine::resume`] (the same probe target with new thresholds: state, streaks and
//! window kept).

use std::collections::VecDeque;

use super::Verdict;
pub use super::check::Window;

/// A change of state, reported once when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The verdict before.
    pub from: Verdict,
    /// The verdict after.
    pub to: Verdict,
}

/// The rise/fall state machine of one check (see the module documentation): probe
/// results in, a [`Transition`] out when the verdict changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    rise: u32,
    fall: u32,
    window: Option<Window>,
    state: Verdict,
    /// Consecutive successes, and consecutive failures, up to the latest result.
    oks: u32,
    fails: u32,
    /// The latest results (true: passed) since the last transition, at most `window.size`;
    /// empty without a window rule.
    recent: VecDeque<bool>,
}

impl Machine {
    /// `rise` and `fall` below 1 are taken as 1 (the config never gives 0).
    pub fn new(rise: u32, fall: u32) -> Machine {
        Machine {
            rise: rise.max(1),
            fall: fall.max(1),
            window: None,
            state: Verdict::Unknown,
            oks: 0,
            fails: 0,
            recent: VecDeque::new(),
        }
    }

    /// Adds the window rule: also unhealthy when `failures` of the last `size` probes failed.
    pub fn with_window(mut self, window: Option<Window>) -> Machine {
        self.window = window.map(|w| Window { size: w.size.max(1), failures: w.failures.clamp(1, w.size.max(1)) });
        self
    }

    /// Starts from a known verdict (with no streak towards the next change) instead of
    /// `Unknown`: leaving it takes the same evidence as any change.
    pub fn seeded(mut self, state: Verdict) -> Machine {
        self.state = state;
        self
    }

    /// The same machine under new thresholds: its state, streaks and window results are
    /// kept (the window cut to its new size), so a check whose timing changed goes on from
    /// what it knew.
    pub fn resume(&self, rise: u32, fall: u32, window: Option<Window>) -> Machine {
        let mut m = Machine::new(rise, fall).with_window(window).seeded(self.state);
        m.oks = self.oks;
        m.fails = self.fails;
        if let Some(w) = m.window {
            m.recent = self.recent.iter().rev().take(w.size as usize).rev().copied().collect();
        }
        m
    }

    /// The current verdict.
    pub fn state(&self) -> Verdict {
        self.state
    }

    /// Feeds one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        if ok {
            self.oks = self.oks.saturating_add(1);
            self.fails = 0;
        } else {
            self.fails = self.fails.saturating_add(1);
            self.oks = 0;
        }
        let mut window_failed = false;
        if let Some(w) = self.window {
            self.recent.push_back(ok);
            while self.recent.len() > w.size as usize {
                self.recent.pop_front();
            }
            window_failed = self.recent.iter().filter(|ok| !**ok).count() >= w.failures as usize;
        }
        let to = match self.state {
            Verdict::Healthy if self.fails >= self.fall || window_failed => Verdict::Unhealthy,
            Verdict::Unhealthy if self.oks >= self.rise => Verdict::Healthy,
            Verdict::Unknown if self.oks >= self.rise => Verdict::Healthy,
            Verdict::Unknown if self.fails >= self.fall || window_failed => Verdict::Unhealthy,
            _ => return None,
        };
        let from = std::mem::replace(&mut self.state, to);
        self.oks = 0;
        self.fails = 0;
        self.recent.clear();
        Some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    /// (rise, fall, probe results as `+`/`-`, the state after each result).
    const CASES: &[(u32, u32, &str, &[Verdict])] = &[
        // The first verdict needs rise successes or fall failures.
        (2, 3, "+", &[Unknown]),
        (2, 3, "++", &[Unknown, Healthy]),
        (2, 3, "---", &[Unknown, Unknown, Unhealthy]),
        (1, 1, "+", &[Healthy]),
        (1, 1, "-", &[Unhealthy]),
        // A mixed start stays unknown: neither streak is long enough.
        (2, 3, "+-+-+-", &[Unknown; 6]),
        // Healthy survives fall-1 failures, however often they come.
        (
            2,
            3,
            "++--+--+--",
            &[Unknown, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy],
        ),
        (2, 3, "++---", &[Unknown, Healthy, Healthy, Healthy, Unhealthy]),
        // Unhealthy needs rise consecutive successes to come back.
        (2, 3, "---+-++", &[Unknown, Unknown, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy]),
        // Flapping (alternating) never changes a settled state with rise/fall 2/3.
        (
            2,
            3,
            "++-+-+-+-+",
            &[Unknown, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy],
        ),
        (
            2,
            3,
            "----+-+-+-",
            &[Unknown, Unknown, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy],
        ),
        // Streaks restart after a transition: the failure that took it down does not count
        // towards the next fall.
        (1, 2, "+--+-", &[Healthy, Healthy, Unhealthy, Healthy, Healthy]),
    ];

    /// The verdict after each probe result of `results` (`+` pass, `-` fail).
    fn trace(mut m: Machine, results: &str) -> Vec<Verdict> {
        results
            .chars()
            .map(|c| {
                m.observe(c == '+');
                m.state()
            })
            .collect()
    }

    #[test]
    fn rise_fall_table() {
        for &(rise, fall, results, states) in CASES {
            let got = trace(Machine::new(rise, fall), results);
            assert_eq!(got, states, "rise {rise} fall {fall} results {results}");
        }
    }

    /// (rise, fall, window as (size, failures), results, the state after each result).
    type WindowCase = (u32, u32, Option<(u32, u32)>, &'static str, &'static [Verdict]);
    const WINDOW_CASES: &[WindowCase] = &[
        // Two failures in the last three take it down; without a window they never do.
        (2, 3, Some((3, 2)), "++-+-", &[Unknown, Healthy, Healthy, Healthy, Unhealthy]),
        (2, 3, None, "++-+-", &[Unknown, Healthy, Healthy, Healthy, Healthy]),
        // Failing two probes of every three: out when 3 of the last 6 failed, and it stays
        // out (never rise = 2 successes in a row) until it really recovers.
        (
            2,
            3,
            Some((6, 3)),
            "++--+--+--++",
            &[
                Unknown, Healthy, Healthy, Healthy, Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy,
                Unhealthy, Healthy,
            ],
        ),
        // The same endpoint without a window stays healthy throughout.
        (
            2,
            3,
            None,
            "++--+--+--++",
            &[
                Unknown, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Healthy,
                Healthy,
            ],
        ),
        // The first verdict can come from the window too.
        (2, 3, Some((4, 2)), "+-+-", &[Unknown, Unknown, Unknown, Unhealthy]),
        // Old failures slide out of the window.
        (1, 5, Some((3, 2)), "+-++-", &[Healthy; 5]),
        // fall still applies beside a window.
        (2, 2, Some((10, 5)), "++--", &[Unknown, Healthy, Healthy, Unhealthy]),
        // The window restarts after a transition: failures before it do not count.
        (1, 9, Some((4, 2)), "-+-+", &[Unknown, Healthy, Healthy, Healthy]),
    ];

    #[test]
    fn window_table() {
        for &(rise, fall, window, results, states) in WINDOW_CASES {
            let m = Machine::new(rise, fall).with_window(window.map(|(size, failures)| Window { size, failures }));
            assert_eq!(trace(m, results), states, "rise {rise} fall {fall} window {window:?} results {results}");
        }
    }

    /// (how the machine starts, results, the state after each result).
    #[test]
    fn seeded_and_resumed_machines_go_on_from_what_they_knew() {
        // A seeded verdict needs the usual evidence to change.
        let cases: &[(Verdict, &str, &[Verdict])] = &[
            (Unhealthy, "+-++", &[Unhealthy, Unhealthy, Unhealthy, Healthy]),
            (Healthy, "--+---", &[Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy]),
            (Unknown, "++", &[Unknown, Healthy]),
        ];
        for &(seed, results, states) in cases {
            let mut m = Machine::new(2, 3).seeded(seed);
            let got: Vec<Verdict> = results
                .chars()
                .map(|c| {
                    m.observe(c == '+');
                    m.state()
                })
                .collect();
            assert_eq!(got, states, "seeded {seed} results {results}");
        }
        // Resumed under new thresholds: two failures already seen count towards fall.
        let mut m = Machine::new(2, 3);
        for c in "++--".chars() {
            m.observe(c == '+');
        }
        let mut same = m.resume(2, 3, None);
        assert_eq!((same.state(), same.observe(false).map(|t| t.to)), (Healthy, Some(Unhealthy)));
        let mut slower = m.resume(2, 5, None);
        assert_eq!([slower.observe(false), slower.observe(false)].map(|t| t.is_some()), [false, false]);
        assert_eq!(slower.observe(false).map(|t| t.to), Some(Unhealthy));
        // A window keeps its latest results, cut to the new size.
        let mut w = Machine::new(1, 9).with_window(Some(Window { size: 5, failures: 3 }));
        for c in "+--".chars() {
            w.observe(c == '+');
        }
        let mut small = w.resume(1, 9, Some(Window { size: 3, failures: 3 }));
        assert_eq!(small.observe(false).map(|t| t.to), Some(Unhealthy));
    }

    #[test]
    fn a_transition_is_reported_once() {
        let mut m = Machine::new(2, 3);
        let seen: Vec<Option<Transition>> = "++++---".chars().map(|c| m.observe(c == '+')).collect();
        assert_eq!(
            seen,
            [
                None,
                Some(Transition { from: Unknown, to: Healthy }),
                None,
                None,
                None,
                None,
                Some(Transition { from: Healthy, to: Unhealthy })
            ]
        );
    }
}
