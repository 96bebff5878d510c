//! The rise/fall state machine of one check: pure, no clock, no I/O.
//!
//! A check starts [`State::Unknown`] on purpose: before any probe has answered we know
//! nothing, and what "unknown" means for answers is the operator's choice (`[health]
//! unknown`), not this machine's. The first verdict needs the same evidence as any later
//! change: `rise` consecutive successes for healthy, `fall` consecutive failures for
//! unhealthy, so one lucky (or lost) probe after a restart decides nothing.

use super::State;

/// A change of state, reported once when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    rise: u32,
    fall: u32,
    state: State,
    /// Consecutive successes, and consecutive failures, up to the latest result.
    oks: u32,
    fails: u32,
}

impl Machine {
    /// `rise` and `fall` below 1 are taken as 1 (the config never gives 0).
    pub fn new(rise: u32, fall: u32) -> Machine {
        Machine { rise: rise.max(1), fall: fall.max(1), state: State::Unknown, oks: 0, fails: 0 }
    }

    pub fn state(&self) -> State {
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
        let to = match self.state {
            State::Healthy if self.fails >= self.fall => State::Unhealthy,
            State::Unhealthy if self.oks >= self.rise => State::Healthy,
            State::Unknown if self.oks >= self.rise => State::Healthy,
            State::Unknown if self.fails >= self.fall => State::Unhealthy,
            _ => return None,
        };
        let from = std::mem::replace(&mut self.state, to);
        self.oks = 0;
        self.fails = 0;
        Some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    /// (rise, fall, probe results as `+`/`-`, the state after each result).
    const CASES: &[(u32, u32, &str, &[State])] = &[
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

    #[test]
    fn rise_fall_table() {
        for &(rise, fall, results, states) in CASES {
            let mut m = Machine::new(rise, fall);
            let got: Vec<State> = results
                .chars()
                .map(|c| {
                    m.observe(c == '+');
                    m.state()
                })
                .collect();
            assert_eq!(got, states, "rise {rise} fall {fall} results {results}");
        }
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
