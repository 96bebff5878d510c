#!/usr/bin/env bash
# bench/dns-qps.sh: UDP queries per second of gslbd next to Knot, NSD and gdnsd,
# all serving bench/zones/example.test.zone on 127.0.0.1.
#
# For each query set (www: `www.example.test A`, a static answer; nx: 10,000
# distinct nonexistent names, NXDOMAIN) it runs dnsperf REPS times per server,
# interleaved (A B C A B C ...), and prints the medians of qps, lost queries,
# server CPU (cores) and qps per core of server CPU. dnsperf itself needs about
# one core of the two, so qps/core is the figure to compare.
#
# Environment: SECS=10 (per run) REPS=3 SERVERS="gslbd gslbd-cpu knot nsd gdnsd"
#   (gslbd-cpu: gslbd again, with dns.udp_steering = "cpu"; gslbd-rrl: gslbd with
#   [dns.rrl] on at a rate dnsperf never reaches, 1,000,000/s: the cost of RRL untriggered)
#   SKIP_GSLBD=1 (leave gslbd out)  GSLBD=target/release/gslbd
#   GDNSD_DYNA=1 (extra row: gdnsd answering app.example.test from a weighted DYNA)
#   gslbd also gets a `geo` row: geo.example.test (geo -> nearest, bench/gslb.toml), each
#   query with an ECS option for another client network: 20,000 queries from ~3,700 /24 and
#   /56 networks on every continent plus unknown ones (bench/ecs-queries.pl, dnsperf -B).
#   OUT_DIR=bench/results/<timestamp>  DNSPERF_ARGS="-c 8 -q 100 -Q 1000000 -t 1"
#   QUIET_WAIT=30 QUIET_CORES=0.3 (before each run, wait up to 30 s for other
#   processes to use less than 0.3 cores; the "other" column shows the noise)
#   NOISY_RETRIES=1 (repeat a run in which others used more than QUIET_CORES)
# bench/dns-qps.sh --table bench/results/<dir> prints an earlier run's table.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------------ table
# col CSV SERVER QSET N: median of column N of the runs of SERVER on QSET
col() { awk -F, -v s="$2" -v q="$3" -v c="$4" '$2 == s && $3 == q { print $c }' "$1" | median; }

table() {  # CSV: the medians per server and query set
  local csv=$1 q s
  echo "dnsperf over UDP; $(grep '^settings:' "$(dirname "$csv")/env.txt")"
  echo "medians; cores = server CPU time / wall time; other = cores used by other processes (noise)"
  printf '%-9s %-5s %9s %6s %6s %10s %6s\n' server qset qps lost cores qps/core other
  for q in www nx dyna geo; do
    for s in $(tail -n +2 "$csv" | cut -d, -f2 | awk '!seen[$0]++'); do
      grep -q ",$s,$q," "$csv" || continue
      printf '%-9s %-5s %9.0f %6.0f %6.2f %10.0f %6.2f\n' "$s" "$q" \
        "$(col "$csv" $s $q 4)" "$(col "$csv" $s $q 5)" "$(col "$csv" $s $q 6)" "$(col "$csv" $s $q 7)" "$(col "$csv" $s $q 8)"
    done
  done
}
if [ "${1:-}" = --table ]; then table "$2/runs.csv"; exit; fi   # re-print an old run's table

SECS=${SECS:-10}
REPS=${REPS:-3}
SERVERS=${SERVERS:-"gslbd gslbd-cpu knot nsd gdnsd"}
[ "${SKIP_GSLBD:-0}" = 1 ] && SERVERS=$(echo " $SERVERS " | sed 's/ gslbd / /; s/ gslbd-cpu / /; s/ gslbd-rrl / /; s/^ *//; s/ *$//')
GDNSD_DYNA=${GDNSD_DYNA:-1}
[[ " $SERVERS " == *" gdnsd "* ]] || GDNSD_DYNA=0
OUT_DIR=${OUT_DIR:-$BENCH/results/$(date +%Y%m%d-%H%M%S)}
ZONES=$BENCH/zones

if [[ " $SERVERS " == *" gslbd"* ]] && [ ! -x "$GSLBD" ]; then
  die "no gslbd binary at $GSLBD: run 'cargo build --release', set GSLBD=path, or SKIP_GSLBD=1"
fi
pkgs="dnsperf bind9-dnsutils"
for s in $SERVERS; do case $s in knot|nsd|gdnsd) pkgs="$pkgs $s";; gslbd|gslbd-cpu|gslbd-rrl) ;; *) die "unknown server $s";; esac; done
install_pkgs $pkgs

RUN=$(mktemp -d /tmp/gslbd-bench.XXXXXX)
trap 'stop_all; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR/logs"
declare -A PORT=()

# ------------------------------------------------------------------ start
start_server() {
  local s=$1 port dir=$RUN/$1 t0
  port=$(free_port 5350); PORT[$s]=$port
  mkdir -p "$dir"
  case $s in
    gslbd|gslbd-cpu|gslbd-rrl)
      render "$BENCH/gslb.toml" "$dir/gslbd.toml" ZONES="$ZONES" GEOIP="$BENCH/../geoip/test-city.mmdb"
      [ "$s" = gslbd-cpu ] && printf '\n[dns]\nudp_steering = "cpu"\n' >> "$dir/gslbd.toml"
      [ "$s" = gslbd-rrl ] && printf '\n[dns.rrl]\nresponses_per_second = 1000000\nerrors_per_second = 1000000\n' >> "$dir/gslbd.toml"
      start "$s" "$dir/gslbd.log" "$GSLBD" --config "$dir/gslbd.toml" --listen "$HOST:$port"
      t0=$(date +%s)
      until grep -q '^ready dns=' "$dir/gslbd.log"; do
        kill -0 "${PID[$s]}" 2>/dev/null || { tail -5 "$dir/gslbd.log" >&2; die "gslbd exited without printing 'ready' (log: $dir/gslbd.log)"; }
        [ $(($(date +%s) - t0)) -lt "$START_TIMEOUT" ] || die "gslbd printed no 'ready' line within ${START_TIMEOUT}s"
        sleep 0.1
      done ;;
    knot)
      mkdir -p "$dir/db"
      render "$BENCH/peers/knot.conf" "$dir/knot.conf" RUN="$dir" PORT="$port" ZONES="$ZONES"
      knotc -c "$dir/knot.conf" conf-check >/dev/null || die "knot.conf check failed"
      start knot "$dir/knotd.log" knotd -c "$dir/knot.conf" ;;
    nsd)
      render "$BENCH/peers/nsd.conf" "$dir/nsd.conf" RUN="$dir" PORT="$port" ZONES="$ZONES"
      nsd-checkconf "$dir/nsd.conf" || die "nsd.conf check failed"
      start nsd "$dir/stdout.log" nsd -d -c "$dir/nsd.conf" ;;
    gdnsd)
      render "$BENCH/peers/gdnsd/config" "$dir/config" RUN="$dir" PORT="$port"
      mkdir -p "$dir/zones" "$dir/run" "$dir/state"
      cat "$ZONES/example.test.zone" "$BENCH/peers/gdnsd/dyna-records" > "$dir/zones/example.test"
      gdnsd -c "$dir" checkconf > "$dir/checkconf.log" 2>&1 || { cat "$dir/checkconf.log" >&2; die "gdnsd config check failed"; }
      start gdnsd "$dir/gdnsd.log" gdnsd -c "$dir" start ;;
  esac
  wait_soa "$s" "$port" example.test.
  log "$s is up: pid ${PID[$s]}, $HOST:$port"
}

# ----------------------------------------------------------------- verify
# Every server: lib.sh's static_answers_ok (www authoritative over UDP and TCP, an
# authoritative NXDOMAIN with the SOA); gslbd also geo_answers_ok.
verify() {
  local s=$1 port=${PORT[$1]} ok=1
  static_answers_ok "$port" || ok=0
  if [[ $s == gslbd* ]]; then geo_answers_ok "$port" || ok=0; fi
  {
    echo "== $s $HOST:$port ok=$ok"; echo "$WWW_ANSWER"; echo "$NX_ANSWER"
    if [ "$s" = gdnsd ] && [ "$GDNSD_DYNA" = 1 ]; then
      echo "app.example.test (weighted DYNA 3/2/1), answers to 30 queries:"
      for i in $(seq 30); do dig +short @"$HOST" -p "$port" app.example.test A; done | sort | uniq -c
    fi
    if [[ $s == gslbd* ]]; then
      echo "$s geo.example.test for 81.2.69.0/24: $(dig +short @"$HOST" -p "$port" geo.example.test A +subnet=81.2.69.0/24)"
    fi
  } >> "$OUT_DIR/verify.txt"
  [ $ok = 1 ] || die "$s gave a wrong answer (see $OUT_DIR/verify.txt)"
}

# ----------------------------------------------------------------- main
echo "www.example.test A" > "$RUN/www.txt"
echo "app.example.test A" > "$RUN/dyna.txt"
perl "$BENCH/ecs-queries.pl" geo.example.test 20000 "$RUN/geo.bin" || die "could not write the geo query set"
nx_queries "$RUN/nx.txt" example.test
{ machine_info; echo "settings: SECS=$SECS REPS=$REPS SERVERS='$SERVERS' GDNSD_DYNA=$GDNSD_DYNA DNSPERF_ARGS='$DNSPERF_ARGS'"; } > "$OUT_DIR/env.txt"

BASE_DNSPERF_ARGS=$DNSPERF_ARGS
for s in $SERVERS; do start_server "$s"; done
for s in $SERVERS; do verify "$s"; done
log "answers verified; $REPS x ${SECS}s runs per server and query set"

CSV=$OUT_DIR/runs.csv
echo "rep,server,qset,qps,lost,cores,qps_per_core,other_cores" > "$CSV"
# one REP SERVER QSET: one run; a run during which other processes used more
# than QUIET_CORES is repeated (NOISY_RETRIES times at most) and the attempt
# with the least noise is kept.
NOISY_RETRIES=${NOISY_RETRIES:-1}
one() {
  local r best="" try qf=$RUN/$3.txt
  [ -e "$RUN/$3.bin" ] && qf=$RUN/$3.bin   # binary query set (dnsperf -B)
  for try in $(seq 0 "$NOISY_RETRIES"); do
    r=$(perf "$2" "${PORT[$2]}" "$qf" "$SECS" "$OUT_DIR/logs/$2-$3-$1-$try.txt") || exit 1
    log "rep $1 $2 $3 try $try: qps lost cores qps/core other = $r"
    if [ -z "$best" ] || awk -v a="${r##* }" -v b="${best##* }" 'BEGIN { exit !(a < b) }'; then best=$r; fi
    awk -v o="${best##* }" -v q="$QUIET_CORES" 'BEGIN { exit !(o < q) }' && break
  done
  echo "$1,$2,$3,${best// /,}" >> "$CSV"
}
for rep in $(seq "$REPS"); do
  for q in www nx; do
    for s in $SERVERS; do one "$rep" "$s" "$q"; done
  done
  [ "$GDNSD_DYNA" = 1 ] && one "$rep" gdnsd dyna
  for s in $SERVERS; do
    if [[ $s == gslbd* ]]; then DNSPERF_ARGS="$BASE_DNSPERF_ARGS -B" one "$rep" "$s" geo; fi
  done
done
stop_all

table "$CSV" | tee "$OUT_DIR/table.txt"
log "raw output in $OUT_DIR"
