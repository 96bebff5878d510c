#!/usr/bin/env python3
"""Second validator for tests/dnssec.rs: dnspython's dns.dnssec.validate, independent of
gslbd's code and of BIND's delv.

    validate.py PORT ANCHOR_FILE CORPUS_JSON

ANCHOR_FILE holds the trust anchor as a DNSKEY line (`gslbd dnssec keygen` prints it).
CORPUS_JSON is a list of cases {"name", "type", "expect", "ecs"?, "addr"?, "tcp"?}:
expect is "positive", "nxdomain" (compact denial: NOERROR, NSEC with NXNAME), "nodata" or
"referral" (NS, and the DS when "ds" is true, else an NSEC at the cut proving there is none);
ecs a client subnet ("203.0.113.0/24"); addr an address the answer must hold; tcp true
when the answer must be too large for UDP (TC, then retried over TCP).

Every RRset in ANSWER and AUTHORITY must carry a valid RRSIG by a key of the DNSKEY RRset,
which must itself be signed by the trust anchor; only NS at a delegation may be unsigned.
Prints one line per case, "ok ..." or "FAIL ...", and exits 1 if any failed.
"""

import json
import sys

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

ZONE = dns.name.from_text("sec.test.")
NXNAME = 128


def ask(port, name, rdtype, ecs=None):
    options = []
    if ecs:
        addr, bits = ecs.split("/")
        options.append(dns.edns.ECSOption(addr, int(bits)))
    q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232, options=options)
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    used_tcp = False
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
        used_tcp = True
    return r, used_tcp


def rrsig_for(section, rrset):
    for s in section:
        if s.rdtype == dns.rdatatype.RRSIG and s.covers == rrset.rdtype and s.name == rrset.name:
            return s
    return None


def check_signed(section, keys, where):
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        if rrset.rdtype == dns.rdatatype.NS and rrset.name != ZONE:
            continue  # NS at a delegation: the child's data, never signed by the parent
        sig = rrsig_for(section, rrset)
        if sig is None:
            raise AssertionError(f"{where}: {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} has no RRSIG")
        dns.dnssec.validate(rrset, sig, keys)


def bitmap_types(nsec):
    types = set()
    for window, bitmap in nsec.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + i * 8 + bit)
    return types


def main():
    port = int(sys.argv[1])
    anchor_text = open(sys.argv[2]).read().split()
    corpus = json.load(open(sys.argv[3]))
    anchor = dns.rrset.from_text(ZONE, 3600, "IN", "DNSKEY", " ".join(anchor_text[4:]))

    r, _ = ask(port, ZONE, "DNSKEY")
    dnskey = r.find_rrset(r.answer, ZONE, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    if anchor[0] not in dnskey:
        print("FAIL the trust anchor is not in the DNSKEY RRset")
        return 1
    keys = {ZONE: dnskey}
    # The DNSKEY RRset must be signed by the anchor itself.
    dns.dnssec.validate(dnskey, rrsig_for(r.answer, dnskey), {ZONE: anchor})

    failed = 0
    for case in corpus:
        label = f"{case['name']} {case['type']}" + (f" ecs={case['ecs']}" if case.get("ecs") else "")
        try:
            r, used_tcp = ask(port, case["name"], case["type"], case.get("ecs"))
            if r.rcode() != dns.rcode.NOERROR:
                raise AssertionError(f"rcode {dns.rcode.to_text(r.rcode())}")
            check_signed(r.answer, keys, "answer")
            check_signed(r.authority, keys, "authority")
            qname = dns.name.from_text(case["name"])
            qtype = dns.rdatatype.from_text(case["type"])
            expect = case["expect"]
            data = [s for s in r.answer if s.rdtype != dns.rdatatype.RRSIG]
            if expect == "positive":
                if not data:
                    raise AssertionError("no answer")
            elif expect == "referral":
                ns = [s for s in r.authority if s.rdtype == dns.rdatatype.NS]
                if data or len(ns) != 1 or r.flags & dns.flags.AA:
                    raise AssertionError("not a referral")
                cut = ns[0].name
                ds = [s for s in r.authority if s.rdtype == dns.rdatatype.DS and s.name == cut]
                nsec = [s for s in r.authority if s.rdtype == dns.rdatatype.NSEC and s.name == cut]
                if case.get("ds"):
                    if not ds:
                        raise AssertionError("referral without its DS")
                elif len(nsec) != 1 or dns.rdatatype.DS in bitmap_types(nsec[0][0]) or dns.rdatatype.NS not in bitmap_types(nsec[0][0]):
                    raise AssertionError("referral without an NSEC proving no DS")
            else:
                denied = qname
                if data and data[-1].rdtype == dns.rdatatype.CNAME:
                    denied = data[-1][0].target
                nsecs = [s for s in r.authority if s.rdtype == dns.rdatatype.NSEC]
                if len(nsecs) != 1 or nsecs[0].name != denied:
                    raise AssertionError(f"want one NSEC at {denied}, got {[str(s.name) for s in nsecs]}")
                nsec = nsecs[0][0]
                if nsec.next != dns.name.Name((b"\x00",) + denied.labels):
                    raise AssertionError(f"NSEC next name {nsec.next}")
                types = bitmap_types(nsec)
                if expect == "nxdomain" and NXNAME not in types:
                    raise AssertionError("NSEC without NXNAME")
                if expect == "nodata" and (NXNAME in types or qtype in types):
                    raise AssertionError(f"NODATA bitmap {sorted(types)}")
            if case.get("addr") and not any(case["addr"] == rd.to_text() for s in data for rd in s):
                raise AssertionError(f"want {case['addr']}, got {[rd.to_text() for s in data for rd in s]}")
            if case.get("tcp") and not used_tcp:
                raise AssertionError("expected TC and a TCP retry")
            print(f"ok {label}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {label}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
