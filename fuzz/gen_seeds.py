#!/usr/bin/env python3
"""Writes the seed queries in fuzz/seeds/ (committed; re-run after changing this file).

Each seed is one DNS message as a UDP payload (no TCP length prefix): the fuzz target feeds
every input to both transports. The seeds cover the paths of the answer algorithm over the
zones in tests/zones and the gates of wire::decode, so mutation starts from the interesting
places instead of having to discover the header layout and the OPT record first.
"""

import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

A, NS, SOA, TXT, AAAA, SRV, DS, OPT, AXFR, IXFR, ANY = 1, 2, 6, 16, 28, 33, 43, 41, 252, 251, 255


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs(family, prefix, addr, scope=0):
    data = struct.pack(">HBB", family, prefix, scope) + addr
    return struct.pack(">HH", 8, len(data)) + data


def opt(payload=1232, version=0, do=False, options=b""):
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack(">HHIH", OPT, payload, ttl, len(options)) + options


def query(qname, qtype, *, ident=0x1234, flags=0x0100, qclass=1, additional=(), opcode=0):
    flags |= opcode << 11
    header = struct.pack(">HHHHHH", ident, flags, 1, 0, 0, len(additional))
    return header + name(qname) + struct.pack(">HH", qtype, qclass) + b"".join(additional)


SEEDS = {
    # The normal query of the tests: two A records.
    "a-plain": query("host.pub.test.", A),
    # EDNS with Client Subnet, IPv4 /24 and IPv6 /56.
    "a-ecs-v4": query("host.pub.test.", A, additional=[opt(options=ecs(1, 24, bytes([81, 2, 69])))]),
    "aaaa-ecs-v6-wildcard": query(
        "X.star.pub.test.", AAAA, additional=[opt(do=True, options=ecs(2, 56, bytes.fromhex("20010db8000000")))]
    ),
    # Truncation: 30 AAAA without EDNS (> 512), 32 TXT with EDNS 1232 and 4096.
    "aaaa-wide-tc": query("wide.pub.test.", AAAA),
    "txt-huge-1232": query("huge.pub.test.", TXT, additional=[opt(1232)]),
    "txt-huge-4096": query("huge.pub.test.", TXT, additional=[opt(4096)]),
    # Referral with glue, CNAME chain, NXDOMAIN, DS at the child apex, SRV with additional.
    "a-referral": query("www.partner.pub.test.", A),
    "a-cname-chain": query("hop1.pub.test.", A),
    "a-nxdomain": query("absent.pub.test.", A),
    "ds-child-apex": query("kids.pub.test.", DS, additional=[opt()]),
    "srv": query("_xmpp._tcp.pub.test.", SRV),
    "any": query("pub.test.", ANY),
    # Zone transfer (answered only over TCP from an allowed client) and IXFR.
    "axfr": query("pub.test.", AXFR, flags=0),
    "ixfr": query("kids.pub.test.", IXFR, flags=0),
    # The gates: other opcode, EDNS version 1, an OPT question, class CH, an unknown option.
    "notimp-opcode2": query("pub.test.", SOA, opcode=2),
    "badvers": query("pub.test.", SOA, additional=[opt(version=1)]),
    "formerr-opt-qtype": query("pub.test.", OPT),
    "class-ch": query("pub.test.", TXT, qclass=3),
    "unknown-option": query("pub.test.", NS, additional=[opt(options=struct.pack(">HH", 10, 8) + b"cookie!!")]),
}


def main():
    os.makedirs(HERE, exist_ok=True)
    for seed, data in SEEDS.items():
        with open(os.path.join(HERE, seed), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {HERE}")


if __name__ == "__main__":
    main()
