//! Any bytes through the whole query path, `frontend::respond`, as UDP and as TCP, and as TCP
//! from a client allowed to transfer zones (so the AXFR encoder is reached too).
//!
//! Invariants for every input:
//! - no panic (the wire module promises it for any packet);
//! - `Drop` exactly for runts (< 12 octets) and responses (QR set), a message otherwise;
//! - a message is at least a header, has QR set, copies the ID, echoes the question octets
//!   when the question could be read, fits the transport (UDP: `wire::size_limit`, 512
//!   without EDNS; TCP: the 16-bit frame length), is never truncated over TCP, and parses
//!   with an independent decoder (hickory-proto);
//! - `Transfer` only over TCP, for an allowed client, and it encodes at least one message,
//!   each of which satisfies the same checks.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use gslbd::frontend::{self, Reply};
use gslbd::answer::Transport;
use gslbd::snapshot::{Settings, Snapshot};
use gslbd::wire::{self, Decoded, Edns};
use gslbd::zone::ZoneSet;
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

/// Inside `transfer_allow`.
const ALLOWED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Outside it.
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The integration tests' zones (pub.test. and its served child kids.pub.test.), loaded once.
static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/zones");
    let zones =
        ZoneSet::load_dir(&dir).unwrap_or_else(|e| panic!("cannot load {}: {e:?}", dir.display()));
    Snapshot {
        zones: Arc::new(zones),
        settings: Arc::new(Settings {
            udp_payload: 1232,
            transfer_allow: vec!["127.0.0.0/8".parse().expect("valid CIDR")],
        }),
        ..Default::default()
    }
});

fuzz_target!(|packet: &[u8]| {
    let snap = &*SNAPSHOT;
    let mut out = Vec::new();
    for (transport, client) in [
        (Transport::Udp, OTHER),
        (Transport::Tcp, OTHER),
        (Transport::Tcp, ALLOWED),
    ] {
        let reply = frontend::respond(packet, client, transport, snap, &mut out, gslbd::metrics::dns_shard(0), None);
        check(packet, transport, client, reply, &out, snap);
    }
});

fn check(
    packet: &[u8],
    transport: Transport,
    client: IpAddr,
    reply: Reply,
    out: &[u8],
    snap: &Snapshot,
) {
    let is_query = packet.len() >= wire::HEADER_LEN && packet[2] & 0x80 == 0;
    let decoded = wire::decode(packet);
    let (edns, question): (Option<Edns>, Option<&[u8]>) = match &decoded {
        Decoded::Query(q) => (q.edns, Some(q.question)),
        Decoded::Error(e) => (e.edns, e.question),
        Decoded::Drop => (None, None),
    };
    match reply {
        Reply::Drop => assert!(!is_query, "a query was dropped"),
        Reply::Message => {
            assert!(is_query, "a runt or a response was answered");
            let limit = wire::size_limit(
                edns.as_ref(),
                transport == Transport::Tcp,
                snap.settings.udp_payload,
            );
            check_message(packet, out, limit, transport);
            if let Some(q) = question {
                assert_eq!(&out[4..6], &[0, 1], "QDCOUNT with a readable question");
                assert!(
                    out[wire::HEADER_LEN..].starts_with(q),
                    "question not echoed verbatim"
                );
            }
        }
        Reply::Transfer => {
            assert!(
                transport == Transport::Tcp && client == ALLOWED,
                "transfer over {transport:?} to {client}"
            );
            // What the TCP frontend does with Reply::Transfer.
            let Decoded::Query(q) = decoded else {
                panic!("transfer for a packet that is not a query: {decoded:?}");
            };
            let zone = snap
                .zones
                .get(q.qname_lower.as_wire())
                .expect("transfer of a served zone apex");
            let messages = wire::encode_transfer(&q, &gslbd::resolve::transfer(zone));
            assert!(!messages.is_empty(), "transfer with no messages");
            for m in &messages {
                check_message(packet, m, u16::MAX as usize, transport);
            }
        }
    }
}

fn check_message(packet: &[u8], out: &[u8], limit: usize, transport: Transport) {
    assert!(
        out.len() >= wire::HEADER_LEN,
        "message shorter than a header"
    );
    assert!(out[2] & 0x80 != 0, "QR clear in a response");
    assert_eq!(out[..2], packet[..2], "ID not copied");
    assert!(
        out.len() <= limit,
        "{transport:?} message of {} octets over the limit {limit}",
        out.len()
    );
    if transport == Transport::Tcp {
        assert!(out[2] & 0x02 == 0, "TC set over TCP");
    }
    if let Err(e) = Message::from_vec(out) {
        panic!("response does not parse: {e}\nquery:    {packet:02x?}\nresponse: {out:02x?}");
    }
}
