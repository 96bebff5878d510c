#!/usr/bin/env bash
# bench/rrl-flood.sh: what a UDP flood from one /24 does to another client, with response
# rate limiting off and on. gslbd ($GSLBD, release) serves bench/zones/example.test.zone
# on 127.0.0.1 with one UDP worker per CPU; for each mode (off; on: [dns.rrl] at 2,000
# responses per second, so the other client's 1,000 are under it) it runs, SECS seconds each:
#   quiet: another client alone, from 127.0.1.1 (another /24), at 1,000 queries/s;
#   flood: the same, while dnsperf floods www.example.test A from 127.0.0.1 as fast as
#          it can (at most 20,000 queries outstanding, 1 s timeout: a dropped answer
#          holds a slot for a second, so with RRL on the flood's rate is bounded by it).
# It prints, per run, the other client's completed and lost queries and latency, and the
# flood's rate and what it got back.
#
# Environment: SECS=10 GSLBD=target/release/gslbd OUT_DIR=bench/results/rrl-<timestamp>
#   MODES="off on"  FLOOD_QPS=1000000 (dnsperf -Q of the flood: to compare floods of the same
#   rate, as with RRL on dnsperf's own timeouts slow it down, unlike a spoofer)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

SECS=${SECS:-10}
MODES=${MODES:-"off on"}
FLOOD_QPS=${FLOOD_QPS:-1000000}
OUT_DIR=${OUT_DIR:-$BENCH/results/rrl-$(date +%Y%m%d-%H%M%S)}
[ -x "$GSLBD" ] || die "no gslbd binary at $GSLBD: run 'cargo build --release' or set GSLBD=path"
install_pkgs dnsperf bind9-dnsutils
RUN=$(mktemp -d /tmp/gslbd-rrl-bench.XXXXXX)
trap 'stop_all; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR"
echo "www.example.test A" > "$RUN/www.txt"
machine_info > "$OUT_DIR/env.txt"

# field FILE PATTERN N: the Nth word of the dnsperf line matching PATTERN
field() { awk -v p="$2" -v n="$3" 'index($0, p) { print $n; exit }' "$1"; }

printf '%-5s %-6s | %-28s | %s\n' rrl load "other client (1,000 q/s)" "flood from 127.0.0.1" | tee "$OUT_DIR/table.txt"
for mode in $MODES; do
  port=$(free_port 5350)
  render "$BENCH/gslb.toml" "$RUN/gslbd.toml" ZONES="$BENCH/zones" GEOIP="$BENCH/../geoip/test-city.mmdb"
  [ "$mode" = on ] && printf '\n[dns.rrl]\nresponses_per_second = 2000\n' >> "$RUN/gslbd.toml"
  start gslbd "$OUT_DIR/gslbd-$mode.log" "$GSLBD" --config "$RUN/gslbd.toml" --listen "$HOST:$port"
  wait_soa gslbd "$port" example.test.
  for load in quiet flood; do
    fpid=""
    if [ "$load" = flood ]; then
      dnsperf -s "$HOST" -p "$port" -d "$RUN/www.txt" -l $((SECS + 2)) -c 8 -q 20000 -t 1 -Q "$FLOOD_QPS" \
        > "$OUT_DIR/flood-$mode.txt" 2>&1 &
      fpid=$!
      sleep 1
    fi
    other=$OUT_DIR/other-$mode-$load.txt
    dnsperf -a 127.0.1.1 -s "$HOST" -p "$port" -d "$RUN/www.txt" -l "$SECS" -Q 1000 -c 1 -q 20 -t 1 > "$other" 2>&1 \
      || { cat "$other" >&2; die "dnsperf (other client) failed"; }
    flood="-"
    if [ -n "$fpid" ]; then
      wait "$fpid"
      f=$OUT_DIR/flood-$mode.txt
      flood="sent $(field "$f" "Queries sent:" 3), answered $(field "$f" "Queries completed:" 3) (incl. TC), $(field "$f" "Queries per second:" 4) answers/s"
    fi
    avg=$(field "$other" "Average Latency" 4)
    max=$(awk '/Average Latency/ { gsub(/[(),]/, ""); print $8; exit }' "$other")
    printf '%-5s %-6s | %5s done %3s lost, avg %s ms max %s ms | %s\n' "$mode" "$load" \
      "$(field "$other" "Queries completed:" 3)" "$(field "$other" "Queries lost:" 3)" \
      "$(awk -v s="$avg" 'BEGIN { printf "%.3f", s * 1000 }')" "$(awk -v s="$max" 'BEGIN { printf "%.1f", s * 1000 }')" \
      "$flood" | tee -a "$OUT_DIR/table.txt"
  done
  stop_one gslbd
done
log "raw output in $OUT_DIR"
