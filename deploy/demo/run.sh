#!/usr/bin/env bash
# The gslbd demo: three regions, each a real HAProxy in front of two backends of its own,
# health-checked by gslbd, which answers demo.test. on 127.0.0.1:5353 by geography, weight,
# priority and stickiness, and moves clients off a region when it dies.
#
#   deploy/demo/run.sh                  run it, in the foreground, until Ctrl-C or SIGTERM,
#                                       which stop everything it started (by PID)
#   deploy/demo/run.sh restart REGION   start again what was killed of a region (HAProxy,
#                                       backends), from another terminal while it runs
#   deploy/demo/run.sh load REGION N [--for SECONDS]
#                                       hold N open connections to a region's HAProxy
#                                       (its session limit is 20) for SECONDS (default 60)
#                                       or until Ctrl-C, from another terminal while the demo
#                                       runs, showing the region's utilisation and its share
#                                       of api.demo.test answers falling and coming back
#   deploy/demo/run.sh --cluster        cluster mode: three etcd members (clients on
#                                       127.0.0.1:2379, :22379, :32379) and three gslbd
#                                       (DNS on 127.0.0.1:5353, :5354, :5355; admin API on
#                                       :8053, :8054, :8055, same token) sharing overrides
#                                       and one health verdict, in front of the same regions
#
# Works without a terminal too:  deploy/demo/run.sh > demo.log 2>&1 &  ...  kill $!
# Generated files (HAProxy configs, PIDs, logs, gslbd state) go to $GSLBD_DEMO_DIR
# (default /tmp/gslbd-demo), emptied at each start: nothing is written into the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
run=${GSLBD_DEMO_DIR:-/tmp/gslbd-demo}
self=$0

# name  HAProxy address  where                   backend ports
regions=(us-east eu-west ap-south)
declare -A ip=([us-east]=127.0.0.11 [eu-west]=127.0.0.12 [ap-south]=127.0.0.13)
declare -A place=([us-east]="Washington DC" [eu-west]="London" [ap-south]="Singapore")
backend_ports=(8081 8082)

say() { echo "demo: $*"; }
warn() { echo "demo: $*" >&2; }
die() { warn "$@"; exit 1; }

# The PID in FILE if that process is alive and its command line contains PATTERN (so a
# recycled PID is never mistaken for ours).
alive() {
  local file=$1 pattern=$2 pid cmdline
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$pattern"* ]] || return 1
  echo "$pid"
}

# HTTP status of URL, 000 when nothing answers.
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null || true; }

# Waits up to 5 s until URL answers WANT (a status code); fails early if PID dies.
wait_http() {
  local url=$1 want=$2 pid=$3
  for _ in $(seq 50); do
    [ "$(status "$url")" = "$want" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# spawn WHAT PIDFILE LOG URL CMD...: start CMD in the background (logging to LOG), record
# its PID in PIDFILE and in $spawned, and wait until URL answers 200; on failure show LOG
# and return 1. Not called in $(...): the process must be a child of this shell.
spawn() {
  local what=$1 pidfile=$2 log=$3 url=$4; shift 4
  "$@" >> "$log" 2>&1 < /dev/null &
  spawned=$!
  echo "$spawned" > "$pidfile"
  wait_http "$url" 200 "$spawned" || {
    warn "$what did not come up ($url); its log ($log):"
    cat "$log" >&2
    return 1
  }
}

# Starts what is not running of region NAME: its two backends, then its HAProxy. Every
# process is a child of this shell, so it is reaped and stopped with the demo.
start_region() {
  local name=$1 dir="$run/$1" addr=${ip[$1]} i port started=()
  mkdir -p "$dir"
  for i in 1 2; do
    port=${backend_ports[$((i - 1))]}
    if ! alive "$dir/backend-$i.pid" "$name backend-$i" >/dev/null; then
      spawn "$name backend-$i" "$dir/backend-$i.pid" "$dir/backend-$i.log" "http://$addr:$port/" \
        python3 "$here/backend.py" "$addr" "$port" "$name backend-$i" || return 1
      started+=("backend-$i pid $spawned")
    fi
  done
  if ! alive "$dir/haproxy.pid" "$dir/haproxy.cfg" >/dev/null; then
    sed -e "s/@REGION@/$name/g" -e "s/@LISTEN@/$addr:8080/g" \
      -e "s/@BACKEND1@/$addr:${backend_ports[0]}/g" -e "s/@BACKEND2@/$addr:${backend_ports[1]}/g" \
      "$here/haproxy.cfg.in" > "$dir/haproxy.cfg"
    spawn "$name HAProxy" "$dir/haproxy.pid" "$dir/haproxy.log" "http://$addr:8080/health" \
      haproxy -f "$dir/haproxy.cfg" -db || return 1
    started+=("haproxy pid $spawned")
  fi
  if [ ${#started[@]} -gt 0 ]; then
    local IFS=,
    say "$name started: ${started[*]}"
  fi
}

pids_of() {
  local name=$1 dir="$run/$1" what=$2
  case $what in
    haproxy) alive "$dir/haproxy.pid" "$dir/haproxy.cfg" || echo "(not running)" ;;
    backends) echo "$(alive "$dir/backend-1.pid" "$name backend-1" || true)" \
                   "$(alive "$dir/backend-2.pid" "$name backend-2" || true)" ;;
  esac
}

# Stops every process of the demo that is still alive: by the PIDs it recorded, and every
# child of this shell (jobs -p) in case a PID file was not written yet.
stop_all() {
  local f pid pattern left=()
  if [ -n "${watcher:-}" ] && kill -STOP "$watcher" 2>/dev/null; then  # the live view, and its dig or curl
    if command -v pkill >/dev/null; then pkill -P "$watcher" || true; fi
    kill "$watcher"
    kill -CONT "$watcher"
  fi
  for pid in $(jobs -p); do
    kill "$pid" 2>/dev/null && left+=("$pid")
  done
  for f in "$run"/*/*.pid "$run"/gslbd.pid "$run"/gslbd-*.pid "$run"/etcd-*.pid; do
    [ -e "$f" ] || continue
    case $f in  # what the process's command line contains
      */haproxy.pid) pattern="${f%/*}/haproxy.cfg" ;;
      */backend-*.pid) pattern="${f%/*}" pattern="${pattern##*/} ${f##*/}" pattern=${pattern%.pid} ;;
      */gslbd.pid) pattern="$run/state" ;;
      */gslbd-*.pid) pattern=${f%.pid} pattern="$run/state-${pattern##*-}" ;;
      */etcd-*.pid) pattern="${f%.pid}.data" ;;
      *) continue ;;
    esac
    if pid=$(alive "$f" "$pattern"); then
      kill "$pid" 2>/dev/null || true
      left+=("$pid")
    fi
    rm -f "$f"
  done
  for _ in $(seq 50); do
    local still=()
    for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
    left=("${still[@]}")
    [ ${#left[@]} -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${left[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ ${#left[@]} -eq 0 ] || wait "${left[@]}" 2>/dev/null || true  # reaps our children (not others)
}

# `run.sh restart REGION`: asks the running demo to start the region's missing processes.
if [ "${1:-}" = restart ]; then
  name=${2:-}
  [ -n "${ip[$name]:-}" ] || die "usage: $self restart us-east|eu-west|ap-south"
  alive "$run/run.pid" run.sh >/dev/null || die "no demo is running (start it with $self)"
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  timeout 2 bash -c 'echo "restart $1" > "$2"' _ "$name" "$run/control" || die "the demo did not take the request"
  for _ in $(seq 50); do
    [ "$(status "http://${ip[$name]}:8080/health")" = 200 ] && { say "$name is back: /health answers 200"; exit 0; }
    sleep 0.1
  done
  die "$name did not come back in 5 s; see $run/$name/*.log"
fi
# `run.sh load REGION N [--for SECONDS]`: a small load client (python3) holds N connections
# open to the region's HAProxy, reopening each one HAProxy closes, while this terminal shows
# every 2 s what gslbd reads and answers: the region's utilisation and its share of 100
# api.demo.test answers. It stops by itself after SECONDS, or on Ctrl-C, and keeps showing
# the share for 10 s more while it comes back.
if [ "${1:-}" = load ]; then
  name=${2:-}; n=${3:-}; secs=60
  usage="usage: $self load us-east|eu-west|ap-south N [--for SECONDS]"
  [ -n "${ip[$name]:-}" ] && [[ $n =~ ^[0-9]+$ ]] || die "$usage"
  if [ "${4:-}" = --for ]; then
    [[ ${5:-} =~ ^[0-9]+$ ]] || die "$usage"
    secs=$5
  fi
  alive "$run/run.pid" run.sh >/dev/null || die "no demo is running (start it with $self)"
  command -v dig >/dev/null || die "please install dig (bind9-dnsutils)"
  python3 - "${ip[$name]}" 8080 "$n" "$secs" <<'PY' &
import socket, sys, threading, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.time() + secs
def hold():
    while time.time() < end:
        try:
            s = socket.create_connection((host, port), timeout=1)
            s.settimeout(0.2)
            while time.time() < end:
                try:
                    if not s.recv(256):
                        break
                except socket.timeout:
                    pass
            s.close()
        except OSError:
            time.sleep(0.05)
threads = [threading.Thread(target=hold, daemon=True) for _ in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
PY
  loader=$!
  trap 'kill "$loader" 2>/dev/null; wait "$loader" 2>/dev/null; say "load on $name ended (Ctrl-C)"; exit 0' INT TERM
  say "holding $n connections to $name (${ip[$name]}:8080) for ${secs}s; Ctrl-C ends it"
  show() {
    local hits u queries=()
    for _ in $(seq 100); do queries+=(api.demo.test A); done
    # One dig, 100 queries (one process instead of a hundred: a line of output in ~1 s).
    hits=$(dig +short +tries=1 +time=1 -p 5353 @127.0.0.1 "${queries[@]}" | grep -cx "${ip[$name]//./\\.}" || true)
    u=$(curl -s --max-time 1 http://127.0.0.1:8053/v1/status | python3 -c "
import json, sys
r = [r for r in json.load(sys.stdin)['regions'] if r['name'] == '$name'][0]
print('unknown' if r['utilisation'] is None else '%.2f' % r['utilisation'])" 2>/dev/null || echo '?')
    say "$(date +%T) $name: utilisation $u, share of api answers $hits % ($1)"
  }
  while kill -0 "$loader" 2>/dev/null; do show "loaded: $n connections"; sleep 1.5; done
  wait "$loader" 2>/dev/null || true
  say "load on $name ended after ${secs}s"
  for _ in 1 2 3 4 5 6; do show "load ended"; sleep 1.5; done
  exit 0
fi
cluster=""
if [ "${1:-}" = --cluster ]; then cluster=1; shift; fi
[ $# -eq 0 ] || die "usage: $self [--cluster] | $self restart REGION | $self load REGION N [--for SECONDS]"

# --- Install what is missing (Debian packages) and build gslbd.
need_pkgs=()
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v dig >/dev/null || need_pkgs+=(bind9-dnsutils)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
if [ -n "$cluster" ]; then command -v etcd >/dev/null || need_pkgs+=(etcd-server); fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    die "please install ${need_pkgs[*]} (as root: apt-get install ${need_pkgs[*]})"
  fi
fi
command -v cargo >/dev/null || die "cargo is missing: install Rust from https://rustup.rs"

cd "$root"
say "building gslbd (release)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-$root/target}/release/gslbd"
"$bin" check --config "$here/gslbd.toml" > /dev/null

# --- A fresh run directory; a previous demo must be gone (its leftovers are stopped).
if pid=$(alive "$run/run.pid" run.sh); then
  die "a demo is already running (pid $pid); stop it first: kill $pid"
fi
if [ -d "$run" ]; then
  [ -e "$run/.gslbd-demo" ] || [ -z "$(ls -A "$run")" ] || die "$run exists and is not a demo directory; set GSLBD_DEMO_DIR"
  stop_all
  rm -rf "$run"
fi
mkdir -p "$run/state"
touch "$run/.gslbd-demo"
echo $$ > "$run/run.pid"
mkfifo "$run/control"
exec 3<> "$run/control"

cleanup() {
  # Ctrl-C reaches every process of the terminal's foreground group, so a subshell (a $(dig)
  # below) may run this trap too: only the main shell cleans up.
  [ "$BASHPID" = "$$" ] || exit 130
  trap - EXIT INT TERM
  stop_all
  rm -f "$run/run.pid"
  say "stopped (files kept in $run)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# --- The regions, then gslbd.
for r in "${regions[@]}"; do start_region "$r" || exit 1; done

# start_gslbd NAME ARGS...: gslbd with these arguments, logging to $run/NAME.{out,log};
# waits for its ready line. Sets $gslbd to its PID.
start_gslbd() {
  local name=$1; shift
  "$bin" "$@" > "$run/$name.out" 2> "$run/$name.log" < /dev/null &
  gslbd=$!
  echo "$gslbd" > "$run/$name.pid"
  for _ in $(seq 100); do
    grep -q '^ready ' "$run/$name.out" && break
    kill -0 "$gslbd" 2>/dev/null || { cat "$run/$name.log" >&2; die "$name exited; see the messages above"; }
    sleep 0.1
  done
  grep -q '^ready ' "$run/$name.out" || die "$name did not get ready in 10 s (log: $run/$name.log)"
  say "$name (pid $gslbd) $(grep '^ready ' "$run/$name.out")"
}

if [ -z "$cluster" ]; then
  start_gslbd gslbd --config "$here/gslbd.toml" --state-dir "$run/state"
else
  # Three etcd members on loopback, each with its own data directory under $run.
  etcd_clients=(2379 22379 32379) etcd_peers=(2380 22380 32380)
  initial=""
  for i in 1 2 3; do initial+="${initial:+,}etcd-$i=http://127.0.0.1:${etcd_peers[$((i - 1))]}"; done
  for i in 1 2 3; do
    c="http://127.0.0.1:${etcd_clients[$((i - 1))]}" p="http://127.0.0.1:${etcd_peers[$((i - 1))]}"
    etcd --name "etcd-$i" --data-dir "$run/etcd-$i.data" --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" --initial-cluster "$initial" \
      --initial-cluster-state new --initial-cluster-token gslbd-demo > "$run/etcd-$i.log" 2>&1 < /dev/null &
    echo $! > "$run/etcd-$i.pid"
  done
  for i in 1 2 3; do
    for _ in $(seq 100); do
      curl -s --max-time 1 "http://127.0.0.1:${etcd_clients[$((i - 1))]}/health" | grep -q '"true"' && break
      sleep 0.1
    done
    curl -s --max-time 1 "http://127.0.0.1:${etcd_clients[$((i - 1))]}/health" | grep -q '"true"' \
      || die "etcd-$i not healthy in 10 s (log: $run/etcd-$i.log)"
  done
  say "etcd: three members, clients on 127.0.0.1:${etcd_clients[0]}, :${etcd_clients[1]}, :${etcd_clients[2]}"
  # The demo's config with absolute paths and a [cluster] table per instance, each its own site.
  for i in 1 2 3; do
    sed -e "s|\"../../zones\"|\"$root/zones\"|" -e "s|\"../../geoip/|\"$root/geoip/|" \
      -e "s|\"admin.token\"|\"$here/admin.token\"|" "$here/gslbd.toml" > "$run/gslbd-$i.toml"
    cat >> "$run/gslbd-$i.toml" <<TOML

[cluster]
etcd = ["http://127.0.0.1:2379", "http://127.0.0.1:22379", "http://127.0.0.1:32379"]
prefix = "/gslbd/demo"
instance = "gslbd-$i"
site = "site-$i"
TOML
    "$bin" check --config "$run/gslbd-$i.toml" > /dev/null
  done
  for i in 3 2 1; do  # gslbd-1 last: $gslbd is the one the live view follows
    start_gslbd "gslbd-$i" --config "$run/gslbd-$i.toml" --listen "127.0.0.1:$((5352 + i))" \
      --admin-listen "127.0.0.1:$((8052 + i))" --state-dir "$run/state-$i"
  done
fi

# The processes the demo watches: gslbd (or gslbd-1..3), and etcd-1..3 in cluster mode.
watched=(gslbd)
[ -n "$cluster" ] && watched=(gslbd-1 gslbd-2 gslbd-3 etcd-1 etcd-2 etcd-3)
# any_gslbd: whether one of the demo's gslbd instances still runs.
any_gslbd() {
  local n
  for n in "${watched[@]}"; do
    [[ $n == gslbd* ]] && kill -0 "$(cat "$run/$n.pid")" 2>/dev/null && return 0
  done
  return 1
}

dig_="dig @127.0.0.1 -p 5353"
token=$(grep -v '^#' "$here/admin.token" | head -1 | cut -d: -f2-)
admin="http://127.0.0.1:8053"
auth="-H 'Authorization: Bearer $token'"
json="-H 'Content-Type: application/json'"
tip() { printf '  %-66s # %s\n' "$1" "$2"; }
echo
echo "gslbd answers demo.test. on 127.0.0.1:5353 (UDP and TCP); its admin API is on $admin."
echo "Three regions, each an HAProxy in front of two backends; gslbd probes each one's /health"
echo "every second (HAProxy answers 200 while one of its backends is up, 503 when none is):"
echo
printf '  %-9s %-18s %-15s %-13s %s\n' region HAProxy where "HAProxy pid" "backend pids"
for r in "${regions[@]}"; do
  printf '  %-9s %-18s %-15s %-13s %s\n' "$r" "${ip[$r]}:8080" "${place[$r]}" "$(pids_of "$r" haproxy)" "$(pids_of "$r" backends)"
done
echo
echo "Ask as clients from different places (EDNS Client Subnet tells gslbd where they are):"
tip "$dig_ www.demo.test +short" "you, 127.0.0.1: Washington DC -> us-east"
tip "$dig_ www.demo.test +short +subnet=81.2.69.0/24" "London, GB -> eu-west"
tip "$dig_ www.demo.test +short +subnet=216.160.83.0/24" "Seattle, US -> us-east"
tip "$dig_ www.demo.test +short +subnet=202.196.224.0/24" "Manila, PH -> ap-south"
tip "$dig_ www.demo.test AAAA +short +subnet=2001:218::/32" "Tokyo, JP -> ap-south (2001:db8::13)"
tip "$dig_ db.demo.test +short" "failover: us-east, else eu-west, else ap-south"
tip "$dig_ sticky.demo.test +short +subnet=198.51.100.0/24" "a client subnet keeps its region"
tip "for i in \$(seq 100); do $dig_ api.demo.test +short; done | sort | uniq -c" "weighted 50/30/20, less when full"
tip "curl http://127.0.0.12:8080/" "a region at work: which backend answered"
tip "curl http://127.0.0.12:8080/stats" "HAProxy's own view of its backends"
echo
echo "Break a region and watch the answers move (this terminal prints every change):"
tip "kill $(pids_of eu-west backends)" "eu-west's backends: its /health goes 503"
tip "curl -i http://127.0.0.12:8080/health" "... 503 Service Unavailable"
tip "$dig_ www.demo.test +short +subnet=81.2.69.0/24" "... London moves to us-east within 2-3 s"
tip "kill $(pids_of us-east haproxy)" "us-east's HAProxy: Seattle and db move to eu-west"
tip "$self restart eu-west" "start what was killed of a region; gslbd sees it"
echo
echo "Fill a region (another terminal): its share of api answers falls, its health stays:"
tip "$self load us-east 19 --for 30" "19 of its 20 sessions held; prints utilisation and share"
tip "curl -s -X POST $auth '$admin/v1/regions/eu-west/drain?dry_run=true'" "where eu-west's load would go"
echo
echo "Operate it through the admin API (token from deploy/demo/admin.token: demo only):"
tip "curl -s $admin/v1/status" "services, regions, health, overrides"
tip "curl -s '$admin/v1/explain?name=www.demo.test&type=A&ecs=81.2.69.0/24'" "why this answer"
tip "curl -s -X POST $auth $admin/v1/regions/us-east/drain" "no new clients for us-east"
tip "curl -s -X POST $auth $admin/v1/regions/us-east/undrain" "and back"
tip "curl -s -X PUT $auth $json -d '{\"weight\":0}' $admin/v1/regions/ap-south/weight" "api: no ap-south"
tip "curl -s -X POST $auth $json -d '{\"state\":\"down\",\"ttl_seconds\":60}' $admin/v1/regions/eu-west/force" "for 60 s"
tip "curl -s $admin/metrics | grep -E '^gslbd_(answers_total|region_up)'" "what was answered"
echo
if [ -n "$cluster" ]; then
  echo "Cluster mode: gslbd-1, -2, -3 answer on 127.0.0.1:5353, :5354, :5355 (admin :8053, :8054, :8055)."
  echo "They share overrides through etcd and probe each region with k = 3 members:"
  tip "curl -s -X POST $auth $admin/v1/regions/us-east/drain" "through gslbd-1 ..."
  tip "dig @127.0.0.1 -p 5355 db.demo.test +short" "... gslbd-3 answers eu-west at once"
  tip "curl -s http://127.0.0.1:8054/v1/status | python3 -m json.tool | less" "members, duties, verdicts"
  tip "kill \$(cat $run/gslbd-2.pid)" "a nameserver dies: the others' answers do not change"
  tip "kill \$(cat $run/etcd-2.pid)" "one etcd member dies: nothing changes, writes work"
  tip "kill \$(cat $run/etcd-1.pid) \$(cat $run/etcd-3.pid)" "etcd gone: answers stay"
  tip "curl -s -X POST $auth $admin/v1/regions/us-east/undrain" "... and writes get 503"
  echo
fi
echo "Logs and generated files: $run (gslbd.log, REGION/haproxy.log ...)."
echo "Press Ctrl-C to stop everything."
echo

# --- Until stopped: take restart requests and print what clients get whenever it changes.
declare -A region_of=([127.0.0.11]=us-east [127.0.0.12]=eu-west [127.0.0.13]=ap-south
  [2001:db8::11]=us-east [2001:db8::12]=eu-west [2001:db8::13]=ap-south)
# /v1/status -> "us-east up  eu-west DOWN (drained)  ap-south up"
summary='
import json, sys
order = {"us-east": 0, "eu-west": 1, "ap-south": 2}
out = []
for r in sorted(json.load(sys.stdin)["regions"], key=lambda r: order.get(r["name"], 9)):
    o = r.get("override") or {}
    notes = [k for k in ("drained",) if o.get(k)]
    if "weight" in o: notes.append("weight %s" % o["weight"])
    if o.get("force"): notes.append("forced " + ("up" if o["force"]["up"] else "down"))
    out.append("%s %s%s" % (r["name"], "up" if r["up"] else "DOWN", " (%s)" % ", ".join(notes) if notes else ""))
print("  ".join(out))
'
answer_at() { # PORT ARGS...: first address of the answer on 127.0.0.1:PORT, as a region name
  local a port=$1
  shift
  a=$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short "$@" 2>/dev/null | grep -v '^;' | head -1)
  if [ -n "$a" ]; then echo "${region_of[$a]:-$a}"; else echo "(no answer)"; fi
}
dns_port=5353
answer() { answer_at "$dns_port" "$@"; }
# The live view runs in a child process of its own: every second it asks HAProxy, gslbd and
# DNS, and prints what changed. (Kept out of the main shell: bash 5.2 mis-parses a $(...)
# that a signal trap interrupts.)
watch_view() {
  local last="" now health r
  mkfifo "$run/tick"
  exec 4<> "$run/tick"  # nothing writes to it: read -t 1 on it is a sleep without a process
  while any_gslbd; do
    # The first instance still running (cluster mode: any one shows all): its admin API
    # and DNS port, from its ready line.
    for n in "${watched[@]}"; do
      if [[ $n == gslbd* ]] && kill -0 "$(cat "$run/$n.pid")" 2>/dev/null; then
        admin="http://$(grep -o 'admin=[^ ,]*' "$run/$n.out" | cut -d= -f2)"
        dns_port=$(grep -o 'dns=[^ ,]*' "$run/$n.out" | head -1 | sed 's/.*://; s/[^0-9].*//')
        break
      fi
    done
    health=""
    for r in "${regions[@]}"; do health+="$r $(status "http://${ip[$r]}:8080/health")  "; done
    now="  HAProxy /health   $health
  gslbd regions     $(curl -s --max-time 1 "$admin/v1/status" | python3 -c "$summary" 2>/dev/null || echo '(no answer)')
  www answers       Seattle $(answer www.demo.test +subnet=216.160.83.0/24), London $(answer www.demo.test +subnet=81.2.69.0/24),\
 Manila $(answer www.demo.test +subnet=202.196.224.0/24), Tokyo $(answer www.demo.test AAAA +subnet=2001:218::/32)
  db answers        $(answer db.demo.test)"
    if [ -n "$cluster" ]; then
      now+="
  nameservers       $(for i in 1 2 3; do printf 'gslbd-%s db %s  ' "$i" "$(answer_at $((5352 + i)) db.demo.test)"; done)
  etcd members      $(for i in 1 2 3; do printf 'etcd-%s %s  ' "$i" "$(kill -0 "$(cat "$run/etcd-$i.pid")" 2>/dev/null && echo up || echo DOWN)"; done)"
    fi
    if [ "$now" != "$last" ]; then
      printf '%s\n%s\n' "$(date +%T)" "$now"
      last=$now
    fi
    read -r -t 1 -u 4 _ || true
  done
}
watch_view &
watcher=$!

# Until stopped: take restart requests. A signal only sets a flag and the loop ends; the
# EXIT trap then stops everything (cleaning up inside a signal trap while children exit
# has crashed bash 5.2, leaving processes behind).
stopping=""
trap 'stopping=1' INT TERM
declare -A gone=()
while [ -z "$stopping" ] && any_gslbd; do
  if read -r -t 1 -u 3 cmd name && [ -z "$stopping" ]; then
    [ "$cmd" = restart ] && [ -n "${ip[$name]:-}" ] && { start_region "$name" || warn "$name: restart failed"; }
  fi
  # Cluster mode: say once when an instance or an etcd member is gone, and keep running.
  for n in "${watched[@]}"; do
    if [ -z "${gone[$n]:-}" ] && ! kill -0 "$(cat "$run/$n.pid")" 2>/dev/null; then
      gone[$n]=1
      warn "$(date +%T) $n exited (log: $run/$n.log); the demo keeps running with the others"
    fi
  done
done
[ -n "$stopping" ] && exit 0
die "gslbd exited; its log: $run/${watched[0]}.log"
