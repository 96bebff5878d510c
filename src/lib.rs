//! gslbd: an authoritative DNS server that steers clients to healthy regional balancers.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod name;
pub mod rtype;
pub mod zone;
