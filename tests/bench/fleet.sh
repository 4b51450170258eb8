#!/usr/bin/env bash
# Fleet heal benchmark: N Electrons (default 1,000) on 0.6.1, product devices,
# one otalab-device process against one otalab-server on loopback, no link
# shaping. The product releases an app needing 0.6.2: each device gets the app,
# reboots into safe mode, and the Safe Mode Healer sends s/3, s/1, s/2, one
# reboot after each. Time runs from the fleet's start to every device running
# the app on 0.6.2 (--until 0.6.2).
# usage: fleet.sh BUILD_DIR
#   OTALAB_BENCH_DEVICES=N (1000)  OTALAB_BENCH_RATE=N first connects/s (100)
#   OTALAB_BENCH_HS=N handshakes in flight (24)  OTALAB_BENCH_TIMEOUT=S (300)
#   OTALAB_BENCH_SERVER_ARGS, OTALAB_BENCH_DEVICE_ARGS (default -q): more options
#   OTALAB_BENCH_CACHE, OTALAB_BENCH_TMP (OTALAB_BENCH_TMP=/tmp shows the cost
#   of fsync on a disk), KEEP: see fleet_lib.sh
# Targets: all succeed, < 60 s, server peak RSS < 150 MB, simulator < 100 MB.
set -uo pipefail
BENCH=fleet
. "$(dirname "$0")/fleet_lib.sh"
N=${OTALAB_BENCH_DEVICES:-1000}
RATE=${OTALAB_BENCH_RATE:-100}
HS=${OTALAB_BENCH_HS:-24}
TIMEOUT=${OTALAB_BENCH_TIMEOUT:-300}
PRODUCT=4242
IDBASE=b0b000000000000000000000
cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null; } # utime+stime
hwm_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null; }
ms() { echo $(($(date +%s%N) / 1000000)); }

otb_prepare
"$OTALAB" mkapp --requires 0.6.2 --out "$T/app.bin" >/dev/null || die "otalab mkapp"
# shellcheck disable=SC2086 # OTALAB_BENCH_SERVER_ARGS: more words
otb_start_server --fixtures "$FIX" ${OTALAB_BENCH_SERVER_ARGS:-}
AUTH="Authorization: Bearer $TOKEN"
curl -sf -H "$AUTH" -d id=$PRODUCT -d name=bench "$U/v1/products" >/dev/null || die "POST /v1/products"
curl -sf -H "$AUTH" -F "binary=@$T/app.bin" -F version=2 "$U/v1/products/$PRODUCT/firmware" \
  >/dev/null || die "POST firmware"
curl -sf -H "$AUTH" -X PUT -d version=2 "$U/v1/products/$PRODUCT/firmware/release" >/dev/null ||
  die "PUT firmware/release"

# Keys (cached) and REST registration happen before the first connect; the
# clock starts when the fleet prints its "connecting" line.
t_setup=$(ms)
"$DEVICE" --count "$N" --mix 0.6.1:1 --id-base $IDBASE --product $PRODUCT \
  --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" --api "$U" --token $TOKEN \
  --state-dir "$T/state" --fixtures "$FIX" --connect-rate "$RATE" --max-handshakes "$HS" \
  --until 0.6.2 --duration "$TIMEOUT" ${OTALAB_BENCH_DEVICE_ARGS:--q} >"$T/fleet.out" 2>"$T/fleet.log" &
FPID=$!
for _ in $(seq 6000); do
  grep -q 'connecting at' "$T/fleet.log" && break
  kill -0 $FPID 2>/dev/null || break
  sleep 0.05
done
t0=$(ms)
setup_s=$(awk "BEGIN {printf \"%.1f\", ($t0 - $t_setup) / 1000}")
srv_hwm=0 srv_cpu0=$(cpu_s $SPID) fcpu=0
while kill -0 $FPID 2>/dev/null; do
  h=$(hwm_kb $SPID)
  [ -n "$h" ] && srv_hwm=$h
  c=$(cpu_s $FPID)
  [ -n "$c" ] && fcpu=$c
  sleep 0.5
done
wait $FPID
rc=$?
FPID=
t1=$(ms)
h=$(hwm_kb $SPID)
[ -n "$h" ] && srv_hwm=$h
srv_cpu=$(awk "BEGIN {printf \"%.1f\", $(cpu_s $SPID) - $srv_cpu0}")
otb_keep_keys
sum=$(grep '^fleet: ' "$T/fleet.out")
[ -n "$sum" ] || die "no fleet summary (exit $rc)"
val() { echo "$sum" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
at=$(grep -c '^device .* release 0.6.2 state RUNNING_APP' "$T/fleet.out")
wall=$(awk "BEGIN {printf \"%.1f\", ($t1 - $t0) / 1000}")
pay=$(val payload_bytes)
jobs_ok=$(grep -c 'job [0-9]* (.*) REBOOTING => DONE' "$T/server.log")
echo "bench/fleet: $N x 0.6.1 product devices, app needing 0.6.2 released, healed via s/3 s/1 s/2"
echo "  connect rate $RATE/s, at most $HS handshakes in flight, setup (keys + REST) ${setup_s} s, data in $TMPD"
echo "  healed: $at / $N (fleet exit $rc; server jobs done: $jobs_ok, otas on devices: $(val otas))"
echo "  wall time: $wall s   devices/s: $(awk "BEGIN {printf \"%.1f\", $at / $wall}")"
echo "  module payload: $(awk "BEGIN {printf \"%.1f MB, %.2f MB/s\", $pay / 1e6, $pay / 1e6 / $wall}")"
echo "  handshakes: full $(val full_hs), resumed $(val resumed_hs), failed $(val failed_hs); reconnects $(val reconnects)"
echo "  CPU: server $srv_cpu s, simulator ~$fcpu s (2 cores shared)"
echo "  peak RSS: server $((srv_hwm / 1024)) MB, simulator $(($(val rss_peak_kb) / 1024)) MB"
ok=1
[ "$at" = "$N" ] || ok=0
awk "BEGIN {exit !($wall < 60)}" || ok=0
[ $((srv_hwm / 1024)) -lt 150 ] || ok=0
[ $(($(val rss_peak_kb) / 1024)) -lt 100 ] || ok=0
echo "  targets (all, < 60 s, server < 150 MB, simulator < 100 MB): $([ $ok = 1 ] && echo met || echo MISSED)"
