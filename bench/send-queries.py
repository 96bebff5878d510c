# bench/send-queries.py PORT QSET N: sends N queries to gslbd on 127.0.0.1:PORT over UDP, one
# at a time (each answer waited for), and exits non-zero on an unexpected answer. Used by
# bench/instructions.sh and bench/cluster-qps.sh to drive gslbd under callgrind.
#   www: `www.example.test A` (a static answer); nx: `nxI.example.test A` for distinct I
#   (NXDOMAIN); geo: `geo.example.test A` (geo -> nearest in bench/gslb.toml), each query
#   with an EDNS Client Subnet /24 of another client network.
import socket, struct, sys
port, qset, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
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
    additional = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opt)) + opt
    pkt = struct.pack(">HHHHHH", i & 0xFFFF, 0, 1, 0, 0, 1) + name(q) + struct.pack(">HH", 1, 1) + additional
    s.sendto(pkt, ("127.0.0.1", port))
    r = s.recv(4096)
    want = 3 if qset == "nx" else 0
    if r[3] & 15 != want or (qset != "nx" and r[7] == 0):
        sys.exit(f"{qset}: unexpected answer {r.hex()}")
