//! multivalue: up to `count` regions, starting at a random one and wrapping, so every
//! healthy region takes its turn at the head of the answer.

use serde::Deserialize;
use toml::Spanned;

use super::weighted::random_below;
use super::{Candidates, Configure, Ctx, Policy, Setup};
use crate::diag::in_range;

/// `[services."NAME".multivalue]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    count: Option<Spanned<i64>>,
}

/// The multivalue policy: up to `count` regions, rotating which one comes first.
#[derive(Debug)]
pub struct MultiValue {
    /// How many regions to answer with (1 to 16, default 1).
    pub count: usize,
}

impl Configure for MultiValue {
    const NAME: &'static str = "multivalue";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<MultiValue> {
        let mut count = 1;
        if let Some(c) = table.and_then(|m| m.count.as_ref()) {
            count = in_range(c, 1..=16, &setup.field("multivalue.count"), "use 1 to 16", setup.report)
                .map_or(count, |c| c as usize);
        }
        Some(MultiValue { count })
    }
}

impl Policy for MultiValue {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn picks_answer(&self) -> bool {
        true
    }

    fn apply(&self, _: &mut Ctx<'_>, cands: &mut Candidates) {
        let n = cands.len();
        let start = random_below(n as u64) as usize;
        cands.rotate_left(start);
        cands.truncate(self.count.min(n));
    }
}
