# bench/send-queries.py PORT QSET N [EDNS]: sends N queries to gslbd on 127.0.0.1:PORT over
# UDP, one at a time (each answer waited for), and exits non-zero on an unexpected answer. Used
# by bench/instructions.sh, bench/cluster-qps.sh and bench/dnssec-do0.sh to drive gslbd under
# callgrind.
#   www: `www.example.test A` (a static answer); nx: `nxI.example.test A` for distinct I
#   (NXDOMAIN); geo: `geo.example.test A` (geo -> nearest in bench/gslb.toml), each query
#   with an EDNS Client Subnet /24 of another client network.
#   EDNS: do0 (default: an OPT record, DO=0), none (no OPT record; not with geo, whose ECS
#   option needs one) or do1 (OPT with the DO bit).
#   PORT may be P1,P2: each query goes to both, and their answers must be byte for byte equal.
import socket, struct, sys
ports, qset, n = [int(p) for p in sys.argv[1].split(",")], sys.argv[2], int(sys.argv[3])
edns = sys.argv[4] if len(sys.argv) > 4 else "do0"
if edns not in ("do0", "none", "do1") or (edns == "none" and qset == "geo"):
    sys.exit(f"bad EDNS mode {edns!r} for {qset}")
def name(s):
    return b"".join(bytes([len(l)]) + l.encode() for l in s.split(".") if l) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for i in range(n):
    if qset == "www":
        q, ecs = "www.example.test", None
    elif qset == "nx":
        q, ecs = f"nx{i}.example.test", None
    else:
        q, ecs = "geo.example.test", bytes([81 + i % 100, (i * 7) % 256, i % 256])
    opt = b""
    if ecs is not None:
        data = struct.pack(">HBB", 1, 24, 0) + ecs
        opt = struct.pack(">HH", 8, len(data)) + data
    flags = 0x8000 if edns == "do1" else 0
    additional = b"" if edns == "none" else b"\0" + struct.pack(">HHHHH", 41, 1232, 0, flags, len(opt)) + opt
    arcount = 0 if edns == "none" else 1
    pkt = struct.pack(">HHHHHH", i & 0xFFFF, 0, 1, 0, 0, arcount) + name(q) + struct.pack(">HH", 1, 1) + additional
    answers = []
    for port in ports:
        s.sendto(pkt, ("127.0.0.1", port))
        answers.append(s.recv(4096))
    r = answers[0]
    want = 3 if qset == "nx" else 0
    if r[3] & 15 != want or (qset != "nx" and r[7] == 0):
        sys.exit(f"{qset}: unexpected answer {r.hex()}")
    if any(a != r for a in answers[1:]):
        sys.exit(f"{qset} EDNS {edns}: answers differ:\n  {ports[0]}: {r.hex()}\n" +
                 "".join(f"  {p}: {a.hex()}\n" for p, a in zip(ports[1:], answers[1:])))
