#!/usr/bin/env bash
# The gslbd demo: builds gslbd (release) and serves the demo zone on 127.0.0.1:5353 in the
# foreground until Ctrl-C or SIGTERM, which stops everything this script started.
# Works without a terminal too:  deploy/demo/run.sh > demo.log 2>&1 &  ...  kill $!
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

need_pkgs=()
command -v dig >/dev/null || need_pkgs+=(bind9-dnsutils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "demo: installing ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "demo: please install ${need_pkgs[*]} (as root: apt-get install ${need_pkgs[*]})" >&2
  fi
fi

echo "demo: building gslbd (release)"
cargo build --release --quiet
bin="$root/target/release/gslbd"
"$bin" check --config "$here/gslbd.toml"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "demo: stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

ready=$(mktemp)
"$bin" --config "$here/gslbd.toml" > "$ready" &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^ready ' "$ready" && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: gslbd exited; see the messages above" >&2; exit 1; }
  sleep 0.1
done
grep '^ready ' "$ready" || { echo "demo: gslbd did not get ready in 10 s" >&2; exit 1; }
rm -f "$ready"

cat <<'TRY'

gslbd is serving demo.test. on 127.0.0.1:5353 (UDP and TCP). Try:

  dig @127.0.0.1 -p 5353 www.demo.test A
  dig @127.0.0.1 -p 5353 docs.demo.test A          # CNAME, followed inside the zone
  dig @127.0.0.1 -p 5353 nothing.demo.test A       # NXDOMAIN with the SOA
  dig @127.0.0.1 -p 5353 www.demo.test A +subnet=81.2.69.0/24
  dig @127.0.0.1 -p 5353 +tcp _http._tcp.demo.test SRV

Edit zones/demo.test.zone and reload with:  kill -HUP <gslbd pid>
Press Ctrl-C to stop.
TRY
wait "${pids[0]}"
