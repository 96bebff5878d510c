//! What gslbd would answer a client now, and why: the admin API's `/v1/explain`.
//!
//! The answer part runs the real query path (decode -> resolve -> encode) on a synthesized
//! query, so it cannot disagree with what `dig` gets; the reasoning part replays the
//! service's policy chain one policy at a time on the same snapshot.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::name::Name;
use crate::policy::Candidates;
use crate::policy::{Client, Ctx, select_traced};
use crate::resolve;
use crate::rtype;
use crate::snapshot::Snapshot;
use crate::wire::{self, Decoded};

/// A query packet for (name, type) with EDNS and, optionally, a Client Subnet option.
pub fn query_packet(qname: &Name, qtype: u16, ecs: Option<(IpAddr, u8)>) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    p.extend_from_slice(qname.as_wire());
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&rtype::CLASS_IN.to_be_bytes());
    let mut opt = Vec::new();
    if let Some((addr, prefix)) = ecs {
        let (family, bytes): (u16, Vec<u8>) = match addr {
            IpAddr::V4(a) => {
                (1, (u32::from(a) & (!0u32).checked_shl(32 - prefix as u32).unwrap_or(0)).to_be_bytes().to_vec())
            }
            IpAddr::V6(a) => {
                (2, (u128::from(a) & (!0u128).checked_shl(128 - prefix as u32).unwrap_or(0)).to_be_bytes().to_vec())
            }
        };
        let len = (prefix as usize).div_ceil(8);
        opt.extend_from_slice(&wire::OPTION_CLIENT_SUBNET.to_be_bytes());
        opt.extend_from_slice(&((4 + len) as u16).to_be_bytes());
        opt.extend_from_slice(&family.to_be_bytes());
        opt.extend_from_slice(&[prefix, 0]);
        opt.extend_from_slice(&bytes[..len]);
    }
    p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
    p.extend_from_slice(&(opt.len() as u16).to_be_bytes());
    p.extend_from_slice(&opt);
    p
}

fn names(snap: &Snapshot, ids: &Candidates) -> Vec<String> {
    ids.iter().map(|&r| snap.gslb.regions[r as usize].name.clone()).collect()
}

/// What `snap` answers a client at `source` (or the ECS address/prefix `ecs`) for `qname`
/// and `qtype`, as the JSON `/v1/explain` returns: the query, the client and its GeoIP
/// location, the answer records, and for a service each region's state, why it was
/// skipped, and what every policy of the chain kept (`{"error": ...}` when no query can be
/// built).
///
/// `load`: the regions' load readings, for their age (None: ages not shown).
pub fn explain(
    snap: &Snapshot,
    load: Option<&crate::load::LoadTable>,
    qname: &Name,
    qtype: u16,
    source: IpAddr,
    ecs: Option<(IpAddr, u8)>,
) -> Value {
    let packet = query_packet(qname, qtype, ecs);
    let Decoded::Query(query) = wire::decode(&packet) else {
        return json!({ "error": "could not build a query for that name and type" });
    };
    let answer = resolve::answer(&query, source, snap);
    let mut out = Vec::new();
    wire::encode_answer(&query, &answer, u16::MAX as usize, snap.settings.udp_payload, &mut out);
    let records: Vec<String> = match hickory_proto::op::Message::from_vec(&out) {
        Ok(m) => m.answers.iter().map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)).collect(),
        Err(e) => vec![format!("(could not decode our own answer: {e})")],
    };
    let client = resolve::client_address(&query, source);
    let location = snap.gslb.geo.as_ref().and_then(|g| g.locate(client));
    let mut result = json!({
        "query": { "name": qname.to_string(), "type": rtype::name(qtype), "source": source.to_string(),
                   "ecs": ecs.map(|(a, p)| format!("{a}/{p}")) },
        "client": {
            "address": client.to_string(),
            "from": if query.edns.and_then(|e| e.client_subnet).is_some_and(|c| c.source_prefix > 0) { "ecs" } else { "source address" },
            "location": location.map(|l| json!({
                "continent": l.continent.as_str(), "country": l.country.as_str(),
                "subdivision": l.subdivision.map(|s| s.as_str().to_string()),
                "coordinates": l.coordinates.map(|(a, b)| [a, b]), "network_prefix": l.prefix_len,
            })),
        },
        "answer": {
            "rcode": wire::rcode::name(answer.rcode),
            "authoritative": answer.aa,
            "records": records,
            "ecs_scope": query.edns.and_then(|e| e.client_subnet).map(|_| answer.ecs_scope),
        },
    });
    let lower = qname.to_lowercase();
    let service = snap.gslb.service(lower.as_wire());
    let Some((index, service)) = service else {
        result["reason"] = json!(match snap.zones.find(lower.as_wire()) {
            Some(z) => format!("static data of zone {} ({})", z.apex(), z.source().display()),
            None => "outside every served zone: REFUSED".to_string(),
        });
        return result;
    };
    let Some(st) = snap.status.services.get(index) else {
        return result;
    };
    let family = st.family(qtype, service);
    let candidates = st.candidates(family);
    let regions: Vec<Value> = service
        .regions
        .iter()
        .map(|&r| {
            let region = &snap.gslb.regions[r as usize];
            let rs = snap.status.regions.get(r as usize);
            let skipped = if candidates.contains(&r) {
                None
            } else if region.answers(family).is_none() {
                Some(format!("no {} address", if family == rtype::AAAA { "IPv6" } else { "IPv4" }))
            } else if rs.is_some_and(|s| s.is_forced && !s.is_up) {
                Some("forced down by the operator".to_string())
            } else if rs.is_some_and(|s| !s.is_up) {
                Some("unhealthy".to_string())
            } else if rs.is_some_and(|s| s.weight == 0) {
                Some("drained (weight 0) while other regions are healthy".to_string())
            } else {
                Some("not a candidate in this mode".to_string())
            };
            let l = load.and_then(|t| t.regions.get(&region.name));
            let age = l.and_then(|l| l.age(std::time::SystemTime::now()));
            let load = match (l, rs.and_then(|s| s.utilisation)) {
                (None, _) => "no load source: load unknown".to_string(),
                (Some(l), None) => match &l.failure {
                    Some(f) => format!("load unknown: {f}"),
                    None => "load unknown: no reading yet".to_string(),
                },
                (Some(_), Some(u)) => format!("utilisation {u:.2}"),
            };
            json!({ "name": region.name, "up": rs.map(|s| s.is_up), "forced": rs.map(|s| s.is_forced), "weight": rs.map(|s| s.weight), "skipped": skipped,
                    "utilisation": rs.and_then(|s| s.utilisation), "load_age_seconds": age, "load": load })
        })
        .collect();
    let mut ctx = Ctx {
        regions: &snap.gslb.regions,
        status: &snap.status.regions,
        rechosen: st.rechosen,
        client: Client::located(client, location),
        shed: None,
    };
    let (chosen, trace) = select_traced(&service.chain, st.candidates(family), &mut ctx);
    result["service"] = json!({
        "name": service.name.to_string(),
        "policy": service.chain.names(),
        "mode": st.mode.as_str(),
        "ttl": st.ttl,
        "depends_on_client": service.is_client_dependent,
        "regions": regions,
        "steps": trace.iter().map(|t| {
            let mut step = json!({ "policy": t.policy, "before": names(snap, &t.before), "after": names(snap, &t.after) });
            if !t.notes.is_empty() {
                step["regions"] = t.notes.iter().map(|(r, note)| json!({ "region": snap.gslb.regions[*r as usize].name, "note": note })).collect();
            }
            step
        }).collect::<Vec<_>>(),
        "chosen": names(snap, &chosen),
        "note": "random policies (weighted, multivalue) may choose differently on each query",
    });
    result
}
