#!/usr/bin/env bash
# bench/dnssec-do0.sh: what configuring DNSSEC ([dnssec] key_directory, issue 16) costs the
# answers that are not signed (queries without the DO bit), in instructions per query.
#
# gslbd twice with the same zones and services (bench/gslb.toml): `unsigned` without [dnssec]
# and `signed` with a [dnssec] key_directory holding a key for example.test. (made with
# `gslbd dnssec keygen`). Before measuring it checks, on both started natively, that they
# answer www, NXDOMAIN and the geo service right (lib.sh's verify_gslb), that `signed` really
# signs (DO=1: RRSIGs with the A RRset, the NXDOMAIN proof and the DNSKEY RRset) and
# `unsigned` does not, that DO=0 answers of `signed` carry no RRSIG, and that for every query
# set below the DO=0 answers of the two are byte for byte the same (and, as a control, that
# the DO=1 answers differ). Then, under callgrind (lib.sh's cg_start and cg_count, as
# bench/cluster-qps.sh counts), N queries one at a time per config and query set:
#   www         www.example.test A, EDNS, DO=0
#   www-noedns  the same without an OPT record
#   nx          NXDOMAIN for distinct names, EDNS, DO=0
#   nx-noedns   the same without an OPT record
#   geo         geo.example.test A (geo -> nearest), EDNS with ECS from N client /24s, DO=0
# and prints Ir per query inside frontend::respond_signed (inclusive) and in the whole UDP
# worker thread, with the difference signed vs unsigned.
#
# Environment: N=3000 REPS=3 (callgrind runs per config and query set; the table shows
#   medians) QSETS (a subset of the sets above) KEEP_DUMPS=0 (1: keep the callgrind dumps in
#   OUT_DIR/callgrind/, for callgrind_annotate) GSLBD=target/release/gslbd
#   OUT_DIR=bench/results/dnssec-do0-<timestamp>.  bench/dnssec-do0.sh --table DIR re-prints.
# Output: the table on stdout; in OUT_DIR table.txt, instructions.csv, verify.txt, env.txt
#   and logs/ (gslbd's logs).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

QSETS=${QSETS:-"www www-noedns nx nx-noedns geo"}
CONFIGS="unsigned signed"

# sender QSET: sets SQ and SE, the query set and EDNS mode for bench/send-queries.py
sender() { case $1 in *-noedns) SQ=${1%-noedns} SE=none ;; *) SQ=$1 SE=do0 ;; esac; }

# ir DIR CONFIG QSET COLUMN: median over the runs (4: respond, 5: worker). Medians, because
# one run in five or so counts some Ir more in either config: the zone's hash map is seeded
# at random per process, so its probe sequences differ from one start to the next.
ir() { awk -F, -v c="$2" -v q="$3" -v k="$4" '$1 == c && $2 == q { print $k }' "$1/instructions.csv" | median; }

table() {  # DIR: Ir/query per query set, unsigned and signed (medians), and the difference
  local dir=$1 q ru rs wu ws
  echo "callgrind, $(grep '^callgrind:' "$dir/env.txt" | cut -d' ' -f2-); instructions (Ir) per query, DO=0, medians"
  printf '%-11s   %-30s   %s\n' '' '---- frontend::respond ----' '----- whole UDP worker -----'
  printf '%-11s   %9s %9s %10s   %9s %9s %10s   %s\n' qset unsigned signed change unsigned signed change 'respond of each run, unsigned | signed'
  for q in $(awk -F, 'NR > 1 && !seen[$2]++ { print $2 }' "$dir/instructions.csv"); do
    ru=$(ir "$dir" unsigned "$q" 4) rs=$(ir "$dir" signed "$q" 4)
    wu=$(ir "$dir" unsigned "$q" 5) ws=$(ir "$dir" signed "$q" 5)
    [ -n "$ru" ] && [ -n "$rs" ] || continue
    printf '%-11s   %9.0f %9.0f %+9.2f%%   %9.0f %9.0f %+9.2f%%   %s | %s\n' "$q" \
      "$ru" "$rs" "$(awk -v a="$ru" -v b="$rs" 'BEGIN { print (b / a - 1) * 100 }')" \
      "$wu" "$ws" "$(awk -v a="$wu" -v b="$ws" 'BEGIN { print (b / a - 1) * 100 }')" \
      "$(awk -F, -v q="$q" '$1 == "unsigned" && $2 == q { printf "%s%s", s, $4; s = " " }' "$dir/instructions.csv")" \
      "$(awk -F, -v q="$q" '$1 == "signed" && $2 == q { printf "%s%s", s, $4; s = " " }' "$dir/instructions.csv")"
  done
}
if [ "${1:-}" = --table ]; then table "$2"; exit; fi   # re-print an old run's table

N=${N:-3000}
REPS=${REPS:-3}
OUT_DIR=${OUT_DIR:-$BENCH/results/dnssec-do0-$(date +%Y%m%d-%H%M%S)}

[ -x "$GSLBD" ] || die "no gslbd binary at $GSLBD: run 'cargo build --release' or set GSLBD=path"
install_pkgs bind9-dnsutils valgrind
command -v python3 >/dev/null || die "python3 is needed (bench/send-queries.py)"

RUN=$(mktemp -d /tmp/gslbd-dnssec-bench.XXXXXX)
trap 'stop_all; cp "$RUN"/*.log "$OUT_DIR/logs/" 2>/dev/null; rm -rf "$RUN"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT_DIR/logs"
declare -A PORT=() CFG=()

# config CONFIG: bench/gslb.toml; `signed` adds [dnssec] with the key directory made below.
for c in $CONFIGS; do
  CFG[$c]=$RUN/$c.toml
  render "$BENCH/gslb.toml" "${CFG[$c]}" ZONES="$BENCH/zones" GEOIP="$REPO/geoip/test-city.mmdb"
done
"$GSLBD" dnssec keygen --key-directory "$RUN/keys" example.test. > "$RUN/keygen.log" 2>&1 \
  || die "gslbd dnssec keygen failed (see $RUN/keygen.log)"
printf '\n[dnssec]\nkey_directory = "%s"\n' "$RUN/keys" >> "${CFG[signed]}"

{
  machine_info
  echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)')"
  echo "key: $(grep -m1 DNSKEY "$RUN/keygen.log")"
  echo "callgrind: N=$N queries one at a time, REPS=$REPS"
} > "$OUT_DIR/env.txt"

# ----------------------------------------------------------------- verify
# has_rrsig PORT DIG_ARGS...: whether the answer to `dig DIG_ARGS` has an RRSIG in any section
has_rrsig() { local port=$1; shift; dig +norec @"$HOST" -p "$port" "$@" | grep -Eq '^[^;].*\sIN\s+RRSIG\s'; }

verify_dnssec() {
  local s=$1 port=${PORT[$1]} q
  # DO=1: RRSIGs from `signed` only (A RRset, NXDOMAIN proof, DNSKEY at the apex).
  for q in "www.example.test A" "nx0042.example.test A" "example.test DNSKEY"; do
    if [ "$s" = signed ]; then
      # shellcheck disable=SC2086
      has_rrsig "$port" +dnssec $q || die "signed: no RRSIG in the DO=1 answer to $q"
    else
      # shellcheck disable=SC2086
      ! has_rrsig "$port" +dnssec $q || die "unsigned: an RRSIG in the DO=1 answer to $q"
    fi
  done
  # DO=0, with and without EDNS: never an RRSIG.
  for q in "www.example.test A" "nx0042.example.test A"; do
    # shellcheck disable=SC2086
    ! has_rrsig "$port" $q && ! has_rrsig "$port" +noedns $q || die "$s: an RRSIG in a DO=0 answer to $q"
  done
  {
    echo "== $s: DO=1 www.example.test A"; dig +norec +dnssec @"$HOST" -p "$port" www.example.test A
    echo "== $s: DO=0 www.example.test A"; dig +norec @"$HOST" -p "$port" www.example.test A
  } >> "$OUT_DIR/verify.txt"
}

for c in $CONFIGS; do
  PORT[$c]=$(free_port 5350)
  mkdir -p "$RUN/state-$c"
  start "$c" "$RUN/$c.log" "$GSLBD" --config "${CFG[$c]}" --listen "$HOST:${PORT[$c]}" --state-dir "$RUN/state-$c"
  wait_ready "$c" "$RUN/$c.log"
  wait_soa "$c" "${PORT[$c]}" example.test.
  log "$c is up: pid ${PID[$c]}, dns $HOST:${PORT[$c]}"
done
for c in $CONFIGS; do verify_gslb "$c" "${PORT[$c]}"; verify_dnssec "$c"; done
for q in $QSETS; do
  sender "$q"
  python3 "$BENCH/send-queries.py" "${PORT[unsigned]},${PORT[signed]}" "$SQ" 300 "$SE" \
    || die "$q: DO=0 answers of unsigned and signed differ"
  echo "$q: 300 DO=0 answers byte for byte the same from unsigned and signed" >> "$OUT_DIR/verify.txt"
done
# The control: the comparison sees a difference where there is one.
python3 "$BENCH/send-queries.py" "${PORT[unsigned]},${PORT[signed]}" www 1 do1 >/dev/null 2>&1 \
  && die "DO=1 answers of unsigned and signed are the same: signed does not sign"
echo "control: DO=1 answers to www differ between unsigned and signed" >> "$OUT_DIR/verify.txt"
for c in $CONFIGS; do stop_one "$c"; done
log "answers verified (see $OUT_DIR/verify.txt); callgrind: N=$N per config and query set"

# --------------------------------------------------------------- callgrind
echo "config,qset,rep,respond_ir,worker_ir" > "$OUT_DIR/instructions.csv"
for rep in $(seq "$REPS"); do
  for q in $QSETS; do
    for c in $CONFIGS; do
      name=cg-$c-$q-$rep dir=$RUN/cg-$c-$q-$rep
      port=$(free_port 5350)
      mkdir -p "$dir/state"
      cg_start "$name" "$dir" --config "${CFG[$c]}" --listen "$HOST:$port" --state-dir "$dir/state"
      wait_ready "$name" "$dir/out.log" 120
      sender "$q"
      cg_count "$name" "$dir" "$port" "$SQ" "$SE"
      if [ "${KEEP_DUMPS:-0}" = 1 ]; then
        mkdir -p "$OUT_DIR/callgrind/$c-$q-$rep" && cp "$dir"/cg.out.1-* "$OUT_DIR/callgrind/$c-$q-$rep/"
      fi
      log "callgrind $c $q rep $rep: Ir/query respond worker = $COUNTED"
      echo "$c,$q,$rep,${COUNTED// /,}" >> "$OUT_DIR/instructions.csv"
    done
  done
done

table "$OUT_DIR" | tee "$OUT_DIR/table.txt"
log "raw output in $OUT_DIR"
