#!/usr/bin/env bash
# bench/gen-zone.sh N: prints the example.test. zone of bench/zones/ plus N A
# records with distinct owners h0000000 .. h(N-1), addresses 10.0.0.0/8.
set -euo pipefail
[ $# = 1 ] || { echo "usage: $0 N > example.test.zone" >&2; exit 2; }
grep -v '^;' "$(dirname "$0")/zones/example.test.zone"
awk -v n="$1" 'BEGIN {
  for (i = 0; i < n; i++)
    printf "h%07d IN A 10.%d.%d.%d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256
}'
