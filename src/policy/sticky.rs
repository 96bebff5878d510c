//! sticky: weighted rendezvous hashing of the client's subnet over the healthy regions. A
//! client keeps its region while that region is healthy; when one of N regions fails, only
//! its clients move, spread over the others by weight; when it returns, they come back.
//! The hash is fixed (no per-process seed), so every gslbd instance sends a subnet to the
//! same region.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{Candidates, Configure, Ctx, Policy, Setup};
use crate::diag::in_range;

/// `[services."NAME".sticky]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
}

/// The sticky policy: rendezvous hashing of the client's subnet, weighted.
#[derive(Debug)]
pub struct Sticky {
    /// Prefix length in bits an IPv4 client is cut to before hashing (0 to 32, default 24).
    pub ipv4_prefix: u8,
    /// Prefix length in bits an IPv6 client is cut to before hashing (0 to 128, default 56).
    pub ipv6_prefix: u8,
    /// A hash of each region's name, by region id: region identity, independent of order.
    seeds: Vec<u64>,
}

/// SplitMix64 finalizer: a well-mixed 64-bit hash of `x`.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a, 64-bit: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Sticky {
    /// Builds the policy for regions named `names` (by region id; the name, not the position,
    /// seeds each region's hash).
    pub fn build(ipv4_prefix: u8, ipv6_prefix: u8, names: &[&str]) -> Sticky {
        Sticky { ipv4_prefix, ipv6_prefix, seeds: names.iter().map(|n| fnv1a(n.as_bytes())).collect() }
    }

    /// The hash of the client's subnet (its address cut to the configured prefix).
    pub fn subnet_key(&self, addr: IpAddr) -> u64 {
        let mut buf = [0u8; 17];
        let len = match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & (!0u32).checked_shl(32 - self.ipv4_prefix as u32).unwrap_or(0);
                buf[0] = 4;
                buf[1..5].copy_from_slice(&bits.to_be_bytes());
                5
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & (!0u128).checked_shl(128 - self.ipv6_prefix as u32).unwrap_or(0);
                buf[0] = 6;
                buf[1..17].copy_from_slice(&bits.to_be_bytes());
                17
            }
        };
        fnv1a(&buf[..len])
    }

    /// The region for this subnet key among `cands`, by weight (`weight(r)`).
    pub fn choose(&self, key: u64, cands: &[u16], weight: impl Fn(u16) -> u32) -> Option<u16> {
        let all_zero = cands.iter().all(|&r| weight(r) == 0);
        cands
            .iter()
            .copied()
            .map(|r| {
                let h = splitmix(key ^ self.seeds.get(r as usize).copied().unwrap_or(r as u64));
                // A uniform number in (0, 1), then the weighted rendezvous score w / -ln(u):
                // the highest score wins, each region with probability w / sum(w).
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let w = if all_zero { 1.0 } else { weight(r) as f64 };
                (r, w / -u.ln())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(r, _)| r)
    }
}

impl Configure for Sticky {
    const NAME: &'static str = "sticky";
    type Table = Table;

    fn configure(table: Option<&Table>, setup: &mut Setup<'_, '_>) -> Option<Sticky> {
        let mut prefix = |v: Option<&Spanned<i64>>, max: i64, default: u8, f: &str| {
            v.and_then(|p| in_range(p, 0..=max, &setup.field(f), &format!("use 0 to {max}"), setup.report))
                .map_or(default, |p| p as u8)
        };
        let ipv4_prefix = prefix(table.and_then(|s| s.ipv4_prefix.as_ref()), 32, 24, "sticky.ipv4_prefix");
        let ipv6_prefix = prefix(table.and_then(|s| s.ipv6_prefix.as_ref()), 128, 56, "sticky.ipv6_prefix");
        Some(Sticky::build(ipv4_prefix, ipv6_prefix, setup.names))
    }
}

impl Policy for Sticky {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn is_client_dependent(&self) -> bool {
        true
    }

    fn picks_answer(&self) -> bool {
        true
    }

    fn apply(&self, ctx: &mut Ctx<'_>, cands: &mut Candidates) {
        let key = self.subnet_key(ctx.client.addr);
        if let Some(r) = self.choose(key, cands, |r| ctx.weight(r)) {
            cands.clear();
            cands.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("region-{i}")).collect()
    }

    fn build(names: &[String]) -> Sticky {
        Sticky::build(24, 56, &names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn removing_one_of_five_moves_only_its_clients() {
        let s = build(&regions(5));
        let all: Vec<u16> = (0..5).collect();
        let four: Vec<u16> = vec![0, 1, 3, 4];
        let mut moved = 0;
        for i in 0..10_000u32 {
            let addr = IpAddr::from((0x0a00_0000u32 + (i << 8)).to_be_bytes());
            let key = s.subnet_key(addr);
            let before = s.choose(key, &all, |_| 100).unwrap();
            let after = s.choose(key, &four, |_| 100).unwrap();
            if before != after {
                assert_eq!(before, 2, "a client of a healthy region moved");
                moved += 1;
            }
        }
        // About a fifth of the subnets were on region 2.
        assert!((1_700..2_300).contains(&moved), "{moved} of 10000 moved");
    }

    #[test]
    fn same_subnet_same_region_and_weights_are_followed() {
        let s = build(&regions(3));
        let a = s.subnet_key("81.2.69.10".parse().unwrap());
        let b = s.subnet_key("81.2.69.200".parse().unwrap());
        assert_eq!(a, b, "one /24, one key");
        assert_ne!(a, s.subnet_key("81.2.70.10".parse().unwrap()));
        let mut counts = [0usize; 3];
        for i in 0..30_000u32 {
            let key = s.subnet_key(IpAddr::from((i << 8).to_be_bytes()));
            counts[s.choose(key, &[0, 1, 2], |r| [50, 30, 20][r as usize]).unwrap() as usize] += 1;
        }
        for (c, w) in counts.iter().zip([50.0, 30.0, 20.0]) {
            let share = *c as f64 / 300.0;
            assert!((share - w).abs() < 1.5, "{counts:?}");
        }
    }
}
