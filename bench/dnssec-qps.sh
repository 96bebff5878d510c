#!/usr/bin/env bash
# bench/dnssec-qps.sh: dnsperf against gslbd serving the signed sec.test. (tests/dnssec),
# the same query with and without the DO bit (-D): qps and qps per core of server CPU,
# measured as dns-qps.sh does (utime+stime of the server over the run). SECS=5 per run, 3 reps.
set -u
cd "$(dirname "$0")/.."
G=${GSLBD:-target/release/gslbd}
D=$(mktemp -d)
cp -r tests/dnssec/zones $D/
sed "s#../../geoip#$PWD/geoip#" tests/dnssec/gslbd.toml > $D/gslbd.toml
$G dnssec keygen --key-directory $D/keys sec.test >/dev/null
$G --config $D/gslbd.toml --listen 127.0.0.1:5395 --admin-listen 127.0.0.1:0 --state-dir $D/state > $D/log 2>&1 &
PID=$!
sleep 1
printf 'static.sec.test A\n' > $D/static.q
printf 'geo.sec.test A\n' > $D/geo.q
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
HZ=$(getconf CLK_TCK)
for rep in 1 2 3; do
for set in static geo; do
  for do in "" "-D"; do
    t0=$(ticks); s0=$(date +%s.%N)
    out=$(dnsperf -s 127.0.0.1 -p 5395 -d $D/$set.q -l ${SECS:-5} -c 8 -q 100 -Q 1000000 -t 1 $do 2>&1)
    t1=$(ticks); s1=$(date +%s.%N)
    qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
    cores=$(echo "($t1-$t0)/$HZ/($s1-$s0)" | bc -l)
    printf '%s %-6s DO=%s qps=%.0f cores=%.2f qps/core=%.0f\n' $rep $set "${do:+1}" $qps $cores $(echo "$qps/$cores" | bc -l)
  done
done
done
kill $PID
rm -rf $D
