//! failover: the regions of the best (lowest) priority; with `ties = "weighted"`, one of
//! them by weight.

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, Setup};

/// `[services."NAME".failover]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    ties: Option<Spanned<String>>,
}

/// The failover policy: keeps the candidates of the lowest `priority`.
#[derive(Debug, Default)]
pub struct Failover {
    /// `ties = "weighted"`: among regions of equal priority, pick one by weight (default: keep
    /// them all).
    pub weighted_ties: bool,
}

impl Configure for Failover {
    const NAME: &'static str = "failover";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Failover> {
        let ties = table.and_then(|f| f.ties.as_ref());
        let weighted_ties = match ties.map(|t| t.get_ref().as_str()) {
            None | Some("all") => false,
            Some("weighted") => true,
            Some(other) => {
                if let Some(t) = ties {
                    let message = format!("{}: {other:?} is not a tie rule", setup.field("failover.ties"));
                    (setup.report)(
                        t.span(),
                        message,
                        Some("use \"all\" (answer every region of the best priority) or \"weighted\" (pick one by weight)"),
                    );
                }
                false
            }
        };
        Some(Failover { weighted_ties })
    }
}

impl Policy for Failover {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let priority = |r: &u16| ctx.regions[*r as usize].priority;
        let Some(best) = cands.iter().map(priority).min() else {
            return;
        };
        cands.retain(|r| priority(r) == best);
        if self.weighted_ties && cands.len() > 1 {
            super::weighted::pick(ctx, cands);
        }
    }
}
