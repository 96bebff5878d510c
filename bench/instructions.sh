#!/usr/bin/env bash
# bench/instructions.sh: CPU instructions per answered query in gslbd's query path, counted by
# valgrind's callgrind, so two builds can be compared on a busy machine (instruction counts
# do not depend on what else runs; qps does). Counts only inside frontend::respond (decode,
# answer, encode, and RRL when on), not the socket calls around it.
#
#   bench/instructions.sh [GSLBD_BINARY ...]      default: target/release/gslbd
#
# For each binary and query set (www: a static A; nx: NXDOMAIN for distinct names; geo: the
# geo -> nearest service of bench/gslb.toml, each query with another client's ECS), it sends
# N=${N:-3000} queries one at a time and prints Ir per query. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/gslbd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e "s#@ZONES@#$PWD/bench/zones#" -e "s#@GEOIP@#$PWD/geoip/test-city.mmdb#" bench/gslb.toml > "$work/gslbd.toml"

send() {  # send PORT QSET: N queries, each waited for
  python3 - "$1" "$2" "$N" <<'PY'
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
PY
}

printf '%-40s %-5s %12s\n' binary qset Ir/query
for bin in "${bins[@]}"; do
  for qset in www nx geo; do
    out="$work/ready"; : > "$out"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --collect-atstart=no \
      --toggle-collect='*frontend*respond*' \
      "$bin" --config "$work/gslbd.toml" --listen 127.0.0.1:0 > "$out" 2>"$work/log" &
    pid=$!
    for _ in $(seq 600); do grep -q '^ready ' "$out" && break; sleep 0.1; done
    port=$(sed -n 's/^ready dns=127\.0\.0\.1:\([0-9]*\)\/udp.*/\1/p' "$out")
    [ -n "$port" ] || { echo "$bin did not start"; cat "$work/log"; kill $pid; exit 1; }
    send "$port" "$qset"
    kill -TERM $pid; wait $pid || true
    ir=$(callgrind_annotate "$work/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }')
    printf '%-40s %-5s %12.0f\n' "$bin" "$qset" "$(echo "$ir / $N" | bc -l)"
  done
done
