# bench/lib.sh: helpers shared by the bench scripts (sourced, not run).
#
# Servers are started by hand as children of the calling script, on free
# 127.0.0.1 ports; their PIDs are kept in PID[name] and stop_all (installed as
# an EXIT trap by the caller) stops each of them by PID.

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
HOST=127.0.0.1
GSLBD=${GSLBD:-$REPO/target/release/gslbd}
START_TIMEOUT=${START_TIMEOUT:-30}     # seconds a server may take to answer
DNSPERF_ARGS=${DNSPERF_ARGS:-"-c 8 -q 100 -Q 1000000 -t 1"}
HZ=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ packages
# install_pkgs PKG...: apt-get install whatever is missing (needs root), then
# stop and disable the system services the packages start: we run our own
# instances on other ports and don't want theirs competing for the CPU.
install_pkgs() {
  if ! dpkg -s "$@" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "missing packages ($*); run as root so they can be installed"
    log "installing $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "$@" >/dev/null \
      || die "apt-get install $* failed"
  fi
  local s
  for s in knot nsd gdnsd; do
    [ "$(id -u)" = 0 ] || break
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "$s.service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$s" ]; then
      "/etc/init.d/$s" stop >/dev/null 2>&1 || true
      update-rc.d "$s" disable >/dev/null 2>&1 || true
    fi
  done
}

# ------------------------------------------------------------------- servers
declare -A PID=() LOGS=()

# free_port N: first port >= N with no UDP or TCP listener on it
free_port() {
  local p=$1
  while ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; do
    p=$((p + 1))
  done
  echo "$p"
}

# render TEMPLATE OUT KEY=VALUE...: copy TEMPLATE replacing @KEY@ by VALUE
render() {
  local in=$1 out=$2 kv args=(); shift 2
  for kv in "$@"; do args+=(-e "s#@${kv%%=*}@#${kv#*=}#g"); done
  sed "${args[@]}" "$in" > "$out"
}

# start NAME LOGFILE CMD...: run CMD in the background, remember its PID
start() {
  local name=$1 logf=$2; shift 2
  "$@" > "$logf" 2>&1 &
  PID[$name]=$! LOGS[$name]=$logf
}

# wait_soa NAME PORT ZONE [TIMEOUT]: poll until NAME answers ZONE's SOA with
# the AA bit (i.e. the zone is loaded); dies if NAME exits or time runs out.
wait_soa() {
  local name=$1 port=$2 zone=$3 tmo=${4:-$START_TIMEOUT} t0 now
  t0=$(date +%s)
  while :; do
    if dig +norec +time=1 +tries=1 @"$HOST" -p "$port" "$zone" SOA 2>/dev/null \
         | grep -q 'flags: qr aa.*ANSWER: 1,'; then
      return 0
    fi
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -5 "${LOGS[$name]}" >&2; die "$name exited before answering (log: ${LOGS[$name]})"; }
    now=$(date +%s)
    [ $((now - t0)) -lt "$tmo" ] || die "$name did not answer $zone SOA on $HOST:$port within ${tmo}s"
    sleep 0.1
  done
}

# all PIDs of a process tree (nsd and gdnsd fork helpers; their CPU counts too)
tree_pids() {
  local frontier=$1 next p
  while [ -n "$frontier" ]; do
    echo $frontier
    next=""
    for p in $frontier; do next="$next $(cat /proc/"$p"/task/*/children 2>/dev/null)"; done
    frontier=$(echo $next)
  done
}

# tree_ticks PID: utime+stime (clock ticks) of PID and its descendants
tree_ticks() {
  local p total=0
  for p in $(tree_pids "$1"); do
    total=$((total + $(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
  done
  echo "$total"
}

# tree_rss_mb PID: VmRSS of PID and its descendants, in MiB
tree_rss_mb() {
  local p
  for p in $(tree_pids "$1"); do cat /proc/"$p"/status 2>/dev/null; done \
    | awk '/^VmRSS:/ { kb += $2 } END { printf "%.0f", kb / 1024 }'
}

# alive PID...: prints those PIDs that still exist and are not zombies
alive() { local p; for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | grep -q '^[^Z]' && echo "$p"; done; }

# stop_one NAME: SIGTERM the process we started and wait (10 s at most) until
# it and every process it had forked are gone; SIGKILL whatever is left.
stop_one() {
  local name=$1 p=${PID[$1]:-} tree i
  [ -n "$p" ] || return 0
  tree=$(tree_pids "$p")
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 40); do [ -z "$(alive $tree)" ] && break; sleep 0.25; done
  if [ -n "$(alive $tree)" ]; then
    log "$name: killing $(alive $tree) (still running 10s after SIGTERM)"
    kill -KILL $(alive $tree) 2>/dev/null
  fi
  wait "$p" 2>/dev/null
  unset "PID[$name]"
  return 0
}
stop_all() { local n; for n in "${!PID[@]}"; do stop_one "$n"; done; }

# wait_ready NAME LOG [TIMEOUT]: until gslbd's ready line (bounded)
wait_ready() {
  local name=$1 logf=$2 tmo=${3:-$START_TIMEOUT} t0
  t0=$(date +%s)
  until grep -q '^ready dns=' "$logf"; do
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -5 "$logf" >&2; die "$name exited without printing 'ready' (log: $logf)"; }
    [ $(($(date +%s) - t0)) -lt "$tmo" ] || die "$name printed no 'ready' line within ${tmo}s (log: $logf)"
    sleep 0.1
  done
}

# static_answers_ok PORT: the zone bench/zones/example.test.zone answered right on PORT:
# www 192.0.2.10, authoritative, over UDP and TCP; a nonexistent name an authoritative
# NXDOMAIN with the SOA. Sets WWW_ANSWER and NX_ANSWER (dig's output, for verify.txt).
static_answers_ok() {
  local port=$1 ok=0
  WWW_ANSWER=$(dig +norec @"$HOST" -p "$port" www.example.test A)
  NX_ANSWER=$(dig +norec @"$HOST" -p "$port" nx0042.example.test A)
  echo "$WWW_ANSWER" | grep -q 'status: NOERROR' && echo "$WWW_ANSWER" | grep -q 'flags: qr aa' \
    && echo "$WWW_ANSWER" | grep -Eq '^www\.example\.test\.\s+300\s+IN\s+A\s+192\.0\.2\.10$' \
    && [ "$(dig +short +tcp @"$HOST" -p "$port" www.example.test A)" = 192.0.2.10 ] \
    && echo "$NX_ANSWER" | grep -q 'status: NXDOMAIN' && echo "$NX_ANSWER" | grep -q 'flags: qr aa' \
    && echo "$NX_ANSWER" | grep -Eq '^example\.test\.\s+[0-9]+\s+IN\s+SOA' && ok=1
  [ $ok = 1 ]
}

# geo_answers_ok PORT: geo.example.test of bench/gslb.toml on PORT gives each test client
# subnet its continent's region, clients on no continent of the map the nearest, unknown
# ones the default.
geo_answers_ok() {
  local port=$1 pair
  for pair in 81.2.69.0/24=192.0.2.22 216.160.83.0/24=192.0.2.21 202.196.224.0/24=192.0.2.23 \
              41.0.7.0/24=192.0.2.23 200.160.0.0/24=192.0.2.21 198.18.5.0/24=192.0.2.21; do
    [ "$(dig +short @"$HOST" -p "$port" geo.example.test A +subnet="${pair%=*}")" = "${pair#*=}" ] || return 1
  done
}

# verify_gslb NAME PORT: gslbd serving bench/gslb.toml answers right (static_answers_ok and
# geo_answers_ok, the checks of dns-qps.sh). Appends what it saw to $OUT_DIR/verify.txt;
# dies on a wrong answer.
verify_gslb() {
  local s=$1 port=$2 ok=1
  static_answers_ok "$port" || ok=0
  geo_answers_ok "$port" || ok=0
  {
    echo "== $s $HOST:$port ok=$ok"; echo "$WWW_ANSWER"; echo "$NX_ANSWER"
    echo "$s geo.example.test for 81.2.69.0/24: $(dig +short @"$HOST" -p "$port" geo.example.test A +subnet=81.2.69.0/24)"
  } >> "$OUT_DIR/verify.txt"
  [ $ok = 1 ] || die "$s gave a wrong answer (see $OUT_DIR/verify.txt)"
}

# ----------------------------------------------------------------- callgrind
# Instructions per query under valgrind's callgrind, which do not depend on the machine's
# load. cg_start NAME DIR GSLBD_ARGS...: gslbd under callgrind, every thread counted in its
# own file DIR/cg.out.*; the caller waits until it is up (wait_ready, ...), then calls
# cg_count NAME DIR PORT QSET [EDNS]: counters zeroed, N queries of QSET sent one at a time
# (bench/send-queries.py PORT QSET N EDNS), counters dumped, NAME stopped. Sets
# COUNTED="respond worker": Ir per query inside frontend::respond_signed (inclusive: decode,
# answer, sign when asked, encode) and of the whole threads that ran it (the UDP worker loop:
# batch receive and send, the once-per-batch snapshot load; not the system calls). Both run
# in the caller's shell, not in $(...), so that its EXIT trap stops valgrind on failure.
cg_start() {
  local name=$1 dir=$2; shift 2
  mkdir -p "$dir"
  start "$name" "$dir/out.log" valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/cg.out" "$GSLBD" "$@"
}
cg_count() {
  local name=$1 dir=$2 port=$3 q=$4 edns=${5:-do0} f respond=0 worker=0
  callgrind_control -z "${PID[$name]}" > "$dir/zero.log" 2>&1 || die "callgrind_control -z failed (see $dir/zero.log)"
  python3 "$BENCH/send-queries.py" "$port" "$q" "$N" "$edns" || die "$name: wrong answers under callgrind"
  callgrind_control -d "${PID[$name]}" > "$dir/dump.log" 2>&1 || die "callgrind_control -d failed (see $dir/dump.log)"
  stop_one "$name"
  for f in "$dir"/cg.out.1-*; do
    grep -q 'respond_signed' "$f" || continue
    worker=$((worker + $(awk '/^totals:/ { print $2 }' "$f")))
    respond=$((respond + $(callgrind_annotate --inclusive=yes "$f" 2>/dev/null \
      | awk '/frontend::respond_signed/ && !done { gsub(",", "", $1); print $1; done = 1 }')))
  done
  [ "$worker" -gt 0 ] && [ "$respond" -gt 0 ] || die "$name: no frontend::respond_signed in the callgrind dump ($dir)"
  COUNTED=$(awk -v r="$respond" -v w="$worker" -v n="$N" 'BEGIN { printf "%.0f %.0f", r / n, w / n }')
}

# ------------------------------------------------------------------- dnsperf
# busy and total CPU ticks of the whole machine
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }

# The machine is shared: before a run, wait (QUIET_WAIT seconds at most) until
# other processes use less than QUIET_CORES of CPU, sampled over 1 s.
QUIET_WAIT=${QUIET_WAIT:-30} QUIET_CORES=${QUIET_CORES:-0.3}
wait_quiet() {
  local i a b busy
  for i in $(seq "$QUIET_WAIT"); do
    a=$(machine_ticks); sleep 1; b=$(machine_ticks)
    busy=$(echo "$a $b" | awk -v n="$(nproc)" '{ printf "%.2f", ($3 - $1) / ($4 - $2) * n }')
    awk -v b="$busy" -v q="$QUIET_CORES" 'BEGIN { exit !(b < q) }' && return 0
  done
  log "machine still busy (${busy} cores used by others), measuring anyway"
}

# perf NAME PORT QUERYFILE SECONDS RAWFILE: one dnsperf run over UDP.
# Prints "qps lost cores qps_per_core other": cores = server CPU seconds
# (utime + stime of its process tree) / wall time; qps_per_core = qps / cores;
# other = cores used by neither the server nor dnsperf (noise on the machine).
perf() {
  local name=$1 port=$2 qf=$3 secs=$4 raw=$5 c0 c1 t0 t1 m0 m1 TIMEFORMAT='%U %S'
  wait_quiet
  c0=$(tree_ticks "${PID[$name]}"); m0=$(machine_ticks); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  { time dnsperf -s "$HOST" -p "$port" -d "$qf" -l "$secs" $DNSPERF_ARGS > "$raw" 2>&1; } 2> "$raw.time" \
    || { cat "$raw" >&2; die "dnsperf against $name failed"; }
  c1=$(tree_ticks "${PID[$name]}"); m1=$(machine_ticks); t1=$(date +%s.%N)
  kill -0 "${PID[$name]}" 2>/dev/null || die "$name died during the run (log: ${LOGS[$name]})"
  awk -v c="$((c1 - c0))" -v hz="$HZ" -v wall="$(echo "$t0 $t1" | awk '{print $2 - $1}')" \
      -v m="$m0 $m1" -v ncpu="$(nproc)" -v perf_s="$(awk '{print $1 + $2}' "$raw.time")" '
    /Queries lost:/       { lost = $3 }
    /Queries per second:/ { qps = $4 }
    END {
      if (qps == "") exit 1
      cores = c / hz / wall
      split(m, t, " "); busy = (t[3] - t[1]) / (t[4] - t[2]) * ncpu
      printf "%.0f %d %.2f %.0f %.2f\n", qps, lost, cores, (cores > 0 ? qps / cores : 0), busy - cores - perf_s / wall
    }' "$raw" || die "could not parse dnsperf output $raw"
}

# median of the numbers on stdin (one per line)
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# nx_queries FILE ZONE: 10,000 distinct nonexistent names (NXDOMAIN)
nx_queries() { awk -v z="$2" 'BEGIN { for (i = 0; i < 10000; i++) printf "nx%04d.%s A\n", i, z }' > "$1"; }

machine_info() {
  echo "machine: $(nproc) cpus,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), kernel $(uname -r)"
  echo "versions: $(dpkg-query -W -f='${Package} ${Version}, ' knot gdnsd nsd dnsperf 2>/dev/null)gslbd $GSLBD"
}
