//! Steering policies. A service's [`Chain`] is a list of policies; each narrows the list of
//! candidate regions (healthy ones, prepared by `gslb::status`) for this client, and the
//! list left after the last one is the answer. A policy that would leave nothing (no map
//! entry for the client, every mapped region down) leaves the list as it was, so the next
//! policy — or the answer — still has healthy regions: `geo -> nearest` sends a client whose
//! mapped region is down to the nearest healthy one.
//!
//! One file per policy (as pingora's `selection/`): it owns its settings table (serde, with
//! spans for `file:line:col` errors), their validation, its build ([`Configure`]) and its
//! per-query work ([`Policy`]). `registry!` lists them; a new policy is one file and one
//! line there.
//!
//! Policies are built once per configuration and are pure functions of (candidates, client,
//! region status); the only per-query state is the thread-local generator of `fastrand`.

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use smallvec::SmallVec;
use toml::Spanned;

use crate::diag::{Report, region_list};
use crate::geoip::{GeoLookup, Location};
pub use crate::region::RegionId;
use crate::region::{Region, RegionStatus};

/// The policies, in the order `use one of:` names them. One line per policy: the module
/// (a file beside this one) and its type, which implements [`Configure`] and [`Policy`].
macro_rules! registry {
    ($($module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every policy name, in registry order.
        pub const NAMES: &[&str] = &[$(<$module::$ty as Configure>::NAME),*];

        /// Names of the policies that have a settings table, in registry order.
        fn table_names() -> Vec<&'static str> {
            let mut v = Vec::new();
            $(if <$module::$ty as Configure>::HAS_TABLE {
                v.push(<$module::$ty as Configure>::NAME);
            })*
            v
        }

        /// Reads the value of key `key` of a service table as that policy's settings table.
        /// Called only for keys in [`TABLE_NAMES`].
        pub fn read_table<'de, A: serde::de::MapAccess<'de>>(key: &str, map: &mut A) -> Result<Table, A::Error> {
            $(if <$module::$ty as Configure>::HAS_TABLE && key == <$module::$ty as Configure>::NAME {
                let t: Spanned<<$module::$ty as Configure>::Table> = map.next_value()?;
                let span = t.span();
                return Ok(Table { name: <$module::$ty as Configure>::NAME, span, value: Box::new(t.into_inner()) });
            })*
            Err(serde::de::Error::custom(format!("{key} is not a policy with settings")))
        }

        /// Builds the policy named `name` from its table; None if no policy has that name.
        fn configure_by_name(name: &str, table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Option<Arc<dyn Policy>>> {
            $(if name == <$module::$ty as Configure>::NAME {
                let t = table.and_then(|t| t.value.downcast_ref::<<$module::$ty as Configure>::Table>());
                return Some(<$module::$ty as Configure>::configure(t, setup).map(|p| Arc::new(p) as Arc<dyn Policy>));
            })*
            None
        }
    };
}

registry! {
    geo::Geo,
    nearest::Nearest,
    latency::Latency,
    weighted::Weighted,
    failover::Failover,
    multivalue::MultiValue,
    sticky::Sticky,
    shed::Shed,
    least_loaded::LeastLoaded,
}

/// Names of the policies with a settings table (`[services."NAME".<policy>]`).
pub static TABLE_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(table_names);

/// Regions a policy may choose from, in config order; inline for ordinary services.
pub type Candidates = SmallVec<[RegionId; 8]>;

/// One steering policy, built from its settings: what it does per query.
pub trait Policy: fmt::Debug + Send + Sync {
    /// Its name in `policy = [...]`, explain and status.
    fn name(&self) -> &'static str;

    /// Whether its choice depends on the client's address (and so the answer's ECS scope
    /// must be the client's prefix).
    fn is_client_dependent(&self) -> bool {
        false
    }

    /// Whether it picks the answer among equals, so nothing after it could narrow further:
    /// such a policy must come last in a chain.
    fn picks_answer(&self) -> bool {
        false
    }

    /// Narrows `cands`, which hold two regions or more (never to empty).
    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates);

    /// A choice made when region status changes rather than per query (latency's, with
    /// hysteresis), among `cands`, given the previous one. None: this policy makes none.
    fn rechoose(&self, cands: &[RegionId], status: &[RegionStatus], prev: Option<RegionId>) -> Option<RegionId> {
        let _ = (cands, status, prev);
        None
    }

    /// `shed`'s watermarks, so intended shares and drain projections can scale weights as
    /// the query path does. None for every other policy.
    fn watermarks(&self) -> Option<shed::Watermarks> {
        None
    }

    /// For explain: what it made of each region of `before` (load steps say what they did
    /// with each region's load). Not the query path.
    fn notes(&self, status: &[RegionStatus], before: &[RegionId]) -> Vec<(RegionId, String)> {
        let _ = (status, before);
        Vec::new()
    }
}

/// One policy's configuration side: its name, its settings table and how it is built.
pub trait Configure: Policy + Sized + 'static {
    /// The name in `policy = [...]`, which is also the key of its settings table.
    const NAME: &'static str;
    /// Whether `[services."NAME".<NAME>]` exists for it.
    const HAS_TABLE: bool = true;
    /// Its settings table, `Spanned` fields so errors keep `file:line:col` (`()` if none).
    type Table: serde::de::DeserializeOwned + fmt::Debug + 'static;

    /// Validates the table (reporting through `setup`) and builds the policy; None when
    /// nothing usable can be built (an error was reported).
    fn configure(table: Option<&Self::Table>, setup: &mut Setup<'_, '_>) -> Option<Self>;
}

/// A policy's settings table as read from the file, before its policy validates it.
pub struct Table {
    /// The policy the table belongs to (its key in the service table, e.g. `geo`).
    pub name: &'static str,
    /// Byte range of the table in the config text, for errors.
    pub span: Range<usize>,
    value: Box<dyn Any>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("name", &self.name).field("span", &self.span).finish_non_exhaustive()
    }
}

/// What a policy's configuration may read, and where it reports errors.
pub struct Setup<'a, 'r> {
    /// The service's name, fully qualified (`x.test.`), for messages.
    pub service: &'a str,
    /// The service's key as written, for field names (`services."x.test".geo`).
    pub key: &'a str,
    /// Where the policy is named in the chain.
    pub span: Range<usize>,
    /// Every configured region's name, by config index.
    pub names: &'a [&'a str],
    /// Every configured region's coordinates, by config index.
    pub coordinates: &'a [Option<(f64, f64)>],
    /// The service's regions, by config index.
    pub members: &'a [usize],
    /// True when a `[geoip]` database is configured (policies that need locations check it).
    pub has_geoip: bool,
    /// Where configuration errors are reported.
    pub report: &'a mut Report<'r>,
}

impl Setup<'_, '_> {
    /// `services."KEY".f`, as messages name a setting.
    pub fn field(&self, f: &str) -> String {
        format!("services.\"{}\".{f}", self.key)
    }

    /// Reports at the policy's place in the chain.
    pub fn error(&mut self, message: String, hint: Option<&str>) {
        (self.report)(self.span.clone(), message, hint);
    }

    /// The regions named by `items` (setting `f`), each a known region and a member of the
    /// service; errors reported at the name.
    pub fn regions(&mut self, items: &[Spanned<String>], f: &str) -> Vec<RegionId> {
        let field = self.field(f);
        let list = region_list(items, self.names, &field, self.report);
        for (i, item) in list.iter().zip(items) {
            if !self.members.contains(i) {
                (self.report)(
                    item.span(),
                    format!("{field}: region {:?} is not in service {}'s regions", item.get_ref(), self.service),
                    Some("add it to the service's regions list"),
                );
            }
        }
        list.iter().map(|&i| i as RegionId).collect()
    }
}

/// Builds the policy `name` (at `setup.span`); None after reporting an unknown name.
pub fn configure(name: &str, table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Arc<dyn Policy>> {
    match configure_by_name(name, table, setup) {
        Some(p) => p,
        None => {
            let message = format!("service {}: unknown policy {name:?}", setup.service);
            setup.error(message, Some(&format!("use one of: {}", NAMES.join(", "))));
            None
        }
    }
}

/// A service's policies, in order.
#[derive(Debug, Clone, Default)]
pub struct Chain(pub Vec<Arc<dyn Policy>>);

impl Chain {
    /// The policies, in chain order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Policy> {
        self.0.iter().map(|p| p.as_ref())
    }

    /// The policies' names, in chain order (for the status API and explain).
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|p| p.name()).collect()
    }

    /// True when some policy reads the client's address.
    pub fn is_client_dependent(&self) -> bool {
        self.iter().any(|p| p.is_client_dependent())
    }

    /// The watermarks of the chain's `shed`, if it has one.
    pub fn watermarks(&self) -> Option<shed::Watermarks> {
        self.iter().find_map(|p| p.watermarks())
    }

    /// The choice some policy makes on status change (see [`Policy::rechoose`]).
    pub fn rechoose(&self, cands: &[RegionId], status: &[RegionStatus], prev: Option<RegionId>) -> Option<RegionId> {
        self.iter().find_map(|p| p.rechoose(cands, status, prev))
    }
}

/// Two chains are equal when they name the same policies with the same settings.
impl PartialEq for Chain {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.iter().zip(other.iter()).all(|(a, b)| format!("{a:?}") == format!("{b:?}"))
    }
}

/// Everything a policy may read for one query.
pub struct Ctx<'a> {
    /// Every region, by id.
    pub regions: &'a [Region],
    /// Every region's status now, by id.
    pub status: &'a [RegionStatus],
    /// The service's choice made on status change ([`Chain::rechoose`]).
    pub rechosen: Option<RegionId>,
    /// The client the query is answered for.
    pub client: Client<'a>,
    /// Set by `shed` for the policies after it: [`Ctx::weight`] is then scaled by load.
    pub shed: Option<shed::Watermarks>,
}

impl Ctx<'_> {
    /// The region's effective weight: the operator's, scaled by load (or replaced by its
    /// free capacity) after `shed`.
    pub fn weight(&self, r: RegionId) -> u32 {
        match (self.status.get(r as usize), self.shed) {
            (None, _) => 0,
            (Some(s), None) => s.weight,
            (Some(s), Some(w)) => match self.regions.get(r as usize) {
                Some(region) => w.weight(region, s),
                None => w.scale(s.weight, s.utilisation),
            },
        }
    }
}

/// The client a query is answered for: the ECS address when the query has one, else the
/// packet's source. Its location is looked up at most once, and only if a policy asks.
pub struct Client<'g> {
    /// The client's address: the ECS address (zero past its source prefix) or the packet's source.
    pub addr: IpAddr,
    geo: Option<&'g dyn GeoLookup>,
    location: Option<Option<Location>>,
}

impl<'g> Client<'g> {
    /// A client at `addr`, located through `geo` on first use (none: never located).
    pub fn new(addr: IpAddr, geo: Option<&'g dyn GeoLookup>) -> Self {
        Client { addr, geo, location: None }
    }

    /// A client whose location is already known (benchmarks and explain).
    pub fn located(addr: IpAddr, location: Option<Location>) -> Self {
        Client { addr, geo: None, location: Some(location) }
    }

    /// The client's GeoIP location, looked up on the first call (cached per address); None when
    /// there is no database or it does not know the address.
    pub fn location(&mut self) -> Option<&Location> {
        if self.location.is_none() {
            self.location = Some(self.geo.and_then(|g| crate::geoip::locate_cached(g, self.addr)));
        }
        self.location.as_ref().and_then(Option::as_ref)
    }
}

/// Keeps the candidates that are in `wanted`; if none is, leaves `cands` unchanged and
/// returns false.
pub fn narrow(cands: &mut Candidates, wanted: &[RegionId]) -> bool {
    if !cands.iter().any(|c| wanted.contains(c)) {
        return false;
    }
    cands.retain(|c| wanted.contains(c));
    true
}

/// Runs `chain` over `pool` (the service's candidates for the query's family).
pub fn select(chain: &Chain, pool: &[RegionId], ctx: &mut Ctx<'_>) -> Candidates {
    let mut cands: Candidates = pool.iter().copied().collect();
    for policy in chain.iter() {
        if cands.len() > 1 {
            policy.apply(ctx, &mut cands);
        }
    }
    cands
}

/// What one policy of an explained decision did: the candidates before and after it ran.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The policy's name.
    pub policy: &'static str,
    /// The candidates before it ran.
    pub before: Candidates,
    /// The candidates after it ran.
    pub after: Candidates,
    /// What it made of each region ([`Policy::notes`]).
    pub notes: Vec<(RegionId, String)>,
}

/// Like [`select`], recording every policy (for the admin API's explain; not the query path).
pub fn select_traced(chain: &Chain, pool: &[RegionId], ctx: &mut Ctx<'_>) -> (Candidates, Vec<Traced>) {
    let mut cands: Candidates = pool.iter().copied().collect();
    let mut trace = Vec::new();
    for policy in chain.iter() {
        let before = cands.clone();
        if cands.len() > 1 {
            policy.apply(ctx, &mut cands);
        }
        let notes = if before.len() > 1 { policy.notes(ctx.status, &before) } else { Vec::new() };
        trace.push(Traced { policy: policy.name(), before, after: cands.clone(), notes });
    }
    (cands, trace)
}

#[cfg(test)]
mod tests;
