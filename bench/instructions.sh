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
  python3 bench/send-queries.py "$1" "$2" "$N"
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
