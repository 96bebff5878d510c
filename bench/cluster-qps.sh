#!/usr/bin/env bash
# bench/cluster-qps.sh: what cluster mode ([cluster] on etcd, issue 12) costs per query.
#
# Starts a real one-member etcd on 127.0.0.1 (data in a temp dir), then gslbd twice with the
# same zones and services (bench/gslb.toml, admin API on): `standalone` without [cluster] and
# `cluster` with a [cluster] table on that etcd. Before measuring it checks that the cluster
# instance has joined (/v1/status: cluster.connected, itself among the members), that the
# standalone one has no cluster section, and that both answer www, NXDOMAIN and the geo
# service right.
# Then, for the query sets www (static A) and geo (geo -> nearest, ECS from ~3,700 client
# networks, bench/ecs-queries.pl), it measures both ways:
#   1. dnsperf, REPS runs of SECS each, interleaved (A B B A ...): qps per core of server CPU
#      as bench/dns-qps.sh does (medians; `other` = CPU used by neither, etcd included);
#   2. callgrind: N queries sent one at a time (bench/send-queries.py), instructions per query
#      inside frontend::respond (as bench/instructions.sh counts) and in the whole UDP worker
#      thread that answered them (batch receive/send, the snapshot load, respond).
#
# Environment: SECS=10 REPS=3 N=3000 CALLGRIND=1 (0: skip part 2) GSLBD=target/release/gslbd
#   OUT_DIR=bench/results/cluster-<timestamp> DNSPERF_ARGS QUIET_WAIT QUIET_CORES NOISY_RETRIES
#   (as in bench/dns-qps.sh).  bench/cluster-qps.sh --table DIR re-prints a run's tables.
# Output: the tables on stdout; in OUT_DIR table.txt, runs.csv, instructions.csv, verify.txt,
#   env.txt (commit, versions, etcd CPU) and logs/ (dnsperf, gslbd and etcd logs).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

QSETS="www geo"
CONFIGS="standalone cluster"

# ------------------------------------------------------------------ tables
col() { awk -F, -v s="$2" -v q="$3" -v c="$4" '$2 == s && $3 == q { print $c }' "$1" | median; }
runs() { awk -F, -v s="$2" -v q="$3" '$2 == s && $3 == q { printf "%s%.0f", sep, $7; sep = " / " }' "$1"; }

table() {  # DIR: the medians per config and query set, then the callgrind figures
  local dir=$1 csv=$1/runs.csv q s base
  echo "dnsperf over UDP; $(grep '^settings:' "$dir/env.txt")"
  echo "medians; cores = server CPU time / wall time; other = cores used by other processes (etcd included)"
  printf '%-10s %-4s %9s %5s %6s %10s %6s %7s  %s\n' config qset qps lost cores qps/core other change "qps/core of each run"
  for q in $QSETS; do
    base=$(col "$csv" standalone "$q" 7)
    for s in $CONFIGS; do
      grep -q ",$s,$q," "$csv" || continue
      printf '%-10s %-4s %9.0f %5.0f %6.2f %10.0f %6.2f %+6.1f%%  %s\n' "$s" "$q" \
        "$(col "$csv" $s $q 4)" "$(col "$csv" $s $q 5)" "$(col "$csv" $s $q 6)" "$(col "$csv" $s $q 7)" \
        "$(col "$csv" $s $q 8)" "$(echo "$(col "$csv" $s $q 7) $base" | awk '{ print ($1 / $2 - 1) * 100 }')" "$(runs "$csv" $s $q)"
    done
  done
  [ -s "$dir/instructions.csv" ] || return 0
  echo
  echo "callgrind, $(grep '^callgrind:' "$dir/env.txt" | cut -d' ' -f2-); instructions (Ir) per query"
  printf '%-10s %-4s %12s %12s\n' config qset respond worker
  for q in $QSETS; do
    awk -F, -v q="$q" '$2 == q { printf "%-10s %-4s %12.0f %12.0f\n", $1, $2, $3, $4 }' "$dir/instructions.csv"
  done
}
if [ "${1:-}" = --table ]; then table "$2"; exit; fi   # re-print an old run's tables

SECS=${SECS:-10}
REPS=${REPS:-3}
N=${N:-3000}
CALLGRIND=${CALLGRIND:-1}
OUT_DIR=${OUT_DIR:-$BENCH/results/cluster-$(date +%Y%m%d-%H%M%S)}

[ -x "$GSLBD" ] || die "no gslbd binary at $GSLBD: run 'cargo build --release' or set GSLBD=path"
pkgs="dnsperf bind9-dnsutils etcd-server curl jq"
[ "$CALLGRIND" = 1 ] && pkgs="$pkgs valgrind"
install_pkgs $pkgs
[ "$CALLGRIND" = 1 ] && { command -v python3 >/dev/null || die "python3 is needed for the callgrind part (or CALLGRIND=0)"; }

RUN=$(mktemp -d /tmp/gslbd-cluster-bench.XXXXXX)
trap 'stop_all; cp "$RUN"/*.log "$OUT_DIR/logs/" 2>/dev/null; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR/logs"
declare -A PORT=() ADMIN=()

# ------------------------------------------------------------------- etcd
# One member on free loopback ports below the ephemeral range (dnsperf's and the kernel's
# port-0 sockets come from 32768 up); etcd preallocates a 64 MB WAL in its data directory.
start_etcd() {
  local client peer t0
  client=$(free_port 23790); peer=$(free_port $((client + 1)))
  ETCD=http://$HOST:$client
  start etcd "$RUN/etcd.log" etcd --name bench --data-dir "$RUN/etcd" \
    --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://$HOST:$peer" --initial-advertise-peer-urls "http://$HOST:$peer" \
    --initial-cluster "bench=http://$HOST:$peer" --initial-cluster-state new \
    --initial-cluster-token "gslbd-bench-$$" --log-level warn
  t0=$(date +%s)
  until curl -fsS --max-time 1 "$ETCD/health" 2>/dev/null | grep -q '"health":"true"'; do
    kill -0 "${PID[etcd]}" 2>/dev/null || { tail -5 "$RUN/etcd.log" >&2; die "etcd exited before it was healthy (log: $RUN/etcd.log)"; }
    [ $(($(date +%s) - t0)) -lt "$START_TIMEOUT" ] || die "etcd was not healthy on $ETCD within ${START_TIMEOUT}s"
    sleep 0.2
  done
  log "etcd is up: pid ${PID[etcd]}, $ETCD ($(etcd --version | head -1))"
}

# ---------------------------------------------------------------- configs
# config CONFIG INSTANCE: bench/gslb.toml with the admin API on (so /v1/status can be asked);
# `cluster` adds a [cluster] table on our etcd for member INSTANCE. Prints the file's path.
config() {
  local c=$1 instance=$2 f=$RUN/$1-$2.toml
  render "$BENCH/gslb.toml" "$f" ZONES="$BENCH/zones" GEOIP="$REPO/geoip/test-city.mmdb"
  sed -i "s#^enabled = false\$#token_file = \"$RUN/admin.token\"#" "$f"
  grep -q '^token_file = ' "$f" || die "bench/gslb.toml has no '[admin] enabled = false' line to replace"
  if [ "$c" = cluster ]; then
    printf '\n[cluster]\netcd = ["%s"]\nprefix = "/gslbd-bench-%s"\ninstance = "%s"\nsite = "bench"\nlease_ttl = "10s"\nprobers_per_region = 3\nverdict = "majority"\n' \
      "$ETCD" "$$" "$instance" >> "$f"
  fi
  echo "$f"
}

# check_mode NAME CONFIG INSTANCE [TIMEOUT]: standalone must have no cluster section in
# /v1/status; cluster must show connected with itself among the members (polled: the join
# and the first member listing take a moment, longer under valgrind).
check_mode() {
  local name=$1 c=$2 instance=$3 tmo=${4:-$START_TIMEOUT} t0 status
  t0=$(date +%s)
  while :; do
    status=$(curl -fsS --max-time 2 "http://${ADMIN[$name]}/v1/status" 2>/dev/null)
    if [ "$c" = standalone ]; then
      [ -n "$status" ] && echo "$status" | jq -e 'has("cluster") | not' >/dev/null && return 0
    elif echo "$status" | jq -e --arg i "$instance" \
         '.cluster.connected == true and .cluster.instance == $i and any(.cluster.members[]; .instance == $i)' >/dev/null 2>&1; then
      echo "$name /v1/status cluster: $(echo "$status" | jq -c '.cluster | {instance, site, connected, members: [.members[].instance]}')" >> "$OUT_DIR/verify.txt"
      return 0
    fi
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited (log: ${LOGS[$name]})"
    [ $(($(date +%s) - t0)) -lt "$tmo" ] || {
      echo "$status" >&2
      die "$name: /v1/status on ${ADMIN[$name]} did not show the expected $c mode within ${tmo}s (log: ${LOGS[$name]})"
    }
    sleep 0.2
  done
}

start_gslbd() {  # start_gslbd CONFIG: the server named CONFIG, for dnsperf
  local c=$1 cfg
  cfg=$(config "$c" "bench-$$") || exit 1
  PORT[$c]=$(free_port 5350); ADMIN[$c]=$HOST:$(free_port 8150)
  mkdir -p "$RUN/state-$c"
  start "$c" "$RUN/$c.log" "$GSLBD" --config "$cfg" --listen "$HOST:${PORT[$c]}" \
    --admin-listen "${ADMIN[$c]}" --state-dir "$RUN/state-$c"
  wait_ready "$c" "$RUN/$c.log"
  wait_soa "$c" "${PORT[$c]}" example.test.
  check_mode "$c" "$c" "bench-$$"
  log "$c is up: pid ${PID[$c]}, dns $HOST:${PORT[$c]}, admin ${ADMIN[$c]}"
}

# ---------------------------------------------------------------- dnsperf
NOISY_RETRIES=${NOISY_RETRIES:-1}
one() {  # one REP CONFIG QSET: one run, repeated when noisy (as in bench/dns-qps.sh)
  local r best="" try qf=$RUN/$3.txt args=$DNSPERF_ARGS
  [ -e "$RUN/$3.bin" ] && { qf=$RUN/$3.bin; args="$args -B"; }
  for try in $(seq 0 "$NOISY_RETRIES"); do
    r=$(DNSPERF_ARGS=$args perf "$2" "${PORT[$2]}" "$qf" "$SECS" "$OUT_DIR/logs/$2-$3-$1-$try.txt") || exit 1
    log "rep $1 $2 $3 try $try: qps lost cores qps/core other = $r"
    if [ -z "$best" ] || awk -v a="${r##* }" -v b="${best##* }" 'BEGIN { exit !(a < b) }'; then best=$r; fi
    awk -v o="${best##* }" -v q="$QUIET_CORES" 'BEGIN { exit !(o < q) }' && break
  done
  echo "$1,$2,$3,${best// /,}" >> "$CSV"
}

# --------------------------------------------------------------- callgrind
# count CONFIG QSET: gslbd under callgrind (lib.sh's cg_start, cg_count); once it is up (and
# joined, for cluster) N queries of QSET are counted. Sets COUNTED="respond worker".
count() {
  local c=$1 q=$2 name=cg-$1-$2 cfg port dir=$RUN/cg-$1-$2
  cfg=$(config "$c" "bench-cg-$q-$$") || exit 1
  port=$(free_port 5350); ADMIN[$name]=$HOST:$(free_port 8150)
  mkdir -p "$dir/state"
  cg_start "$name" "$dir" --config "$cfg" --listen "$HOST:$port" \
    --admin-listen "${ADMIN[$name]}" --state-dir "$dir/state"
  wait_ready "$name" "$dir/out.log" 120
  check_mode "$name" "$c" "bench-cg-$q-$$" 120
  cg_count "$name" "$dir" "$port" "$q"
}

# ------------------------------------------------------------------ main
echo "www.example.test A" > "$RUN/www.txt"
perl "$BENCH/ecs-queries.pl" geo.example.test 20000 "$RUN/geo.bin" || die "could not write the geo query set"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/admin.token"
{
  machine_info
  echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "etcd: $(etcd --version 2>/dev/null | head -1)"
  echo "settings: SECS=$SECS REPS=$REPS DNSPERF_ARGS='$DNSPERF_ARGS'"
  [ "$CALLGRIND" = 1 ] && echo "callgrind: N=$N queries one at a time"
} > "$OUT_DIR/env.txt"

start_etcd
for c in $CONFIGS; do start_gslbd "$c"; done
for c in $CONFIGS; do verify_gslb "$c" "${PORT[$c]}"; done
log "modes and answers verified; $REPS x ${SECS}s runs per config and query set"

CSV=$OUT_DIR/runs.csv
echo "rep,config,qset,qps,lost,cores,qps_per_core,other_cores" > "$CSV"
etcd0=$(tree_ticks "${PID[etcd]}"); t0=$(date +%s.%N)
for rep in $(seq "$REPS"); do
  order=$CONFIGS
  [ $((rep % 2)) = 0 ] && order=$(echo "$CONFIGS" | awk '{ for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "") }')
  for q in $QSETS; do
    for c in $order; do one "$rep" "$c" "$q"; done
  done
done
echo "etcd: $(echo "$(tree_ticks "${PID[etcd]}") $etcd0 $HZ $t0 $(date +%s.%N)" \
  | awk '{ printf "%.3f", ($1 - $2) / $3 / ($5 - $4) }') cores on average during the dnsperf runs" >> "$OUT_DIR/env.txt"
for c in $CONFIGS; do stop_one "$c"; done

if [ "$CALLGRIND" = 1 ]; then
  echo "config,qset,respond_ir,worker_ir" > "$OUT_DIR/instructions.csv"
  for q in $QSETS; do
    for c in $CONFIGS; do
      count "$c" "$q"
      log "callgrind $c $q: Ir/query respond worker = $COUNTED"
      echo "$c,$q,${COUNTED// /,}" >> "$OUT_DIR/instructions.csv"
    done
  done
fi
stop_all

table "$OUT_DIR" | tee "$OUT_DIR/table.txt"
log "raw output in $OUT_DIR"
