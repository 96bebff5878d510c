#!/usr/bin/env bash
# bench/zone-size.sh: how gslbd and Knot cope with a big zone.
#
# Generates example.test. with SIZE (default 1,000,000) A records into a temp
# dir, then for each server, on the small zone (bench/zones/) and the big one,
# one server at a time:
#   load_s   seconds from starting the server until it answers the zone's SOA
#            authoritatively (polled with dig; includes process start-up)
#   rss_mb   VmRSS of the server's processes right after that
#   nx qps   a short dnsperf run of 10,000 distinct nonexistent names
#            (NXDOMAIN), with the server CPU used and qps per core of it
#
# Environment: SIZE=1000000 SECS=5 SERVERS="gslbd knot" SKIP_GSLBD=1
#   LOAD_TIMEOUT=600 GSLBD=target/release/gslbd QUIET_WAIT=30 QUIET_CORES=0.3
#   ("other" = CPU cores used by other processes during the run: noise)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

SIZE=${SIZE:-1000000}
SECS=${SECS:-5}
SERVERS=${SERVERS:-"gslbd knot"}
[ "${SKIP_GSLBD:-0}" = 1 ] && SERVERS=$(echo " $SERVERS " | sed 's/ gslbd / /; s/^ *//; s/ *$//')
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}

if [[ " $SERVERS " == *" gslbd "* ]] && [ ! -x "$GSLBD" ]; then
  die "no gslbd binary at $GSLBD: run 'cargo build --release', set GSLBD=path, or SKIP_GSLBD=1"
fi
pkgs="dnsperf bind9-dnsutils"
for s in $SERVERS; do case $s in knot) pkgs="$pkgs knot";; gslbd) ;; *) die "unknown server $s (gslbd, knot)";; esac; done
install_pkgs $pkgs

RUN=$(mktemp -d /tmp/gslbd-zone-size.XXXXXX)
trap 'stop_all; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN/big"
log "generating a zone of $SIZE A records"
"$BENCH/gen-zone.sh" "$SIZE" > "$RUN/big/example.test.zone" || die "zone generation failed"
nx_queries "$RUN/nx.txt" example.test
last=$(tail -1 "$RUN/big/example.test.zone")   # e.g. "h0999999 IN A 10.15.66.63"

# measure SERVER ZONEDIR LABEL: start, time the load, RSS, NX run, stop
measure() {
  local s=$1 zones=$2 label=$3 port dir=$RUN/$1-$3 t0 t1 rss r
  port=$(free_port 5350); mkdir -p "$dir/db"
  t0=$(date +%s.%N)
  case $s in
    gslbd) start gslbd "$dir/gslbd.log" "$GSLBD" --zones "$zones" --listen "$HOST:$port" ;;
    knot)  render "$BENCH/peers/knot.conf" "$dir/knot.conf" RUN="$dir" PORT="$port" ZONES="$zones"
           start knot "$dir/knotd.log" knotd -c "$dir/knot.conf" ;;
  esac
  wait_soa "$s" "$port" example.test. "$LOAD_TIMEOUT"
  t1=$(date +%s.%N)
  rss=$(tree_rss_mb "${PID[$s]}")
  # the zone must really be all there: ask for its last record
  if [ "$label" = big ]; then
    [ "$(dig +short @"$HOST" -p "$port" "${last%% *}.example.test" A)" = "${last##* }" ] \
      || die "$s: wrong answer for ${last%% *}.example.test (expected ${last##* })"
  fi
  r=$(perf "$s" "$port" "$RUN/nx.txt" "$SECS" "$dir/dnsperf-nx.txt") || exit 1
  stop_one "$s"
  printf '%-6s %-6s %9d %8.2f %7d %9s %6s %6s %10s %6s\n' "$s" "$label" "$(grep -c ' IN ' "$zones/example.test.zone")" \
    "$(echo "$t0 $t1" | awk '{print $2 - $1}')" "$rss" $r
}

echo "$(machine_info | head -1)"
echo "NX qps: dnsperf over UDP, ${SECS}s, $DNSPERF_ARGS; cores = server CPU time / wall time"
printf '%-6s %-6s %9s %8s %7s %9s %6s %6s %10s %6s\n' server zone records load_s rss_mb nx_qps lost cores qps/core other
for s in $SERVERS; do
  measure "$s" "$BENCH/zones" small
  measure "$s" "$RUN/big" big
done
