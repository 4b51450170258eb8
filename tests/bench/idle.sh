#!/usr/bin/env bash
# Idle fleet benchmark: N connected, described, idle Electrons (0.6.2, developer
# devices: nothing to update) in one otalab-device process against one
# otalab-server. Measures the server's resident memory per session and the
# CPU that keep-alive traffic costs, with the device clock at --time-scale K so
# that the 23-minute keep-alive ping (PROTOCOL.md 1.5) comes every 1380/K s.
# The server's device table holds 1,024 devices (SRV_MAX_DEVICES), so larger
# fleets are extrapolated from N, and labelled so.
# usage: idle.sh BUILD_DIR
#   OTALAB_BENCH_DEVICES=N (1000)  OTALAB_BENCH_SCALE=K (1000)
#   OTALAB_BENCH_WINDOW=S real seconds of idle measured (20)
#   OTALAB_BENCH_CACHE, OTALAB_BENCH_TMP, KEEP: see fleet_lib.sh
# Target: server RSS per idle session < 60 KB.
set -uo pipefail
BENCH=idle
. "$(dirname "$0")/fleet_lib.sh"
N=${OTALAB_BENCH_DEVICES:-1000}
K=${OTALAB_BENCH_SCALE:-1000}
W=${OTALAB_BENCH_WINDOW:-20}
IDBASE=1d1e00000000000000000000
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
cpu_cs() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime+stime, 1/100 s
fmt() { awk "BEGIN {printf \"$1\", $2}"; }

otb_prepare
otb_start_server
base=$(rss_kb $SPID)

"$DEVICE" --count "$N" --mix 0.6.2:1 --id-base $IDBASE \
  --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
  --api "$U" --token $TOKEN --state-dir "$T/state" --fixtures "$FIX" \
  --connect-rate 200 --max-handshakes 24 --time-scale "$K" -q >"$T/fleet.out" 2>"$T/fleet.log" &
FPID=$!
t0=$(date +%s)
until [ "$(grep -c '^.* describe ([0-9]* bytes)' "$T/server.log")" -ge "$N" ]; do
  kill -0 $FPID 2>/dev/null || die "fleet exited"
  [ $(($(date +%s) - t0)) -lt 120 ] || die "not all $N described in 120 s"
  sleep 0.5
done
connect_s=$(($(date +%s) - t0))
otb_keep_keys
sleep 2 # settle: greetings, events
s_rss=$(rss_kb $SPID) f_rss=$(rss_kb $FPID)
s0=$(cpu_cs $SPID) f0=$(cpu_cs $FPID) r0=$(date +%s%N)
sleep "$W"
s1=$(cpu_cs $SPID) f1=$(cpu_cs $FPID) r1=$(date +%s%N)
s_rss2=$(rss_kb $SPID)
kill -0 $FPID 2>/dev/null || die "fleet died during the idle window"
real=$(fmt "%.2f" "($r1 - $r0) / 1e9")
pings=$(fmt "%.0f" "$N * $real * $K / 1380")
[ "$s_rss2" -gt "$s_rss" ] && s_rss=$s_rss2 # the larger of before/after the window
per_sess=$(fmt "%.1f" "($s_rss - $base) / $N")
srv_pct=$(fmt "%.2f" "($s1 - $s0) / $real")
sim_pct=$(fmt "%.2f" "($f1 - $f0) / $real")
us_ping=$(fmt "%.0f" "($s1 - $s0) * 10000 / ($pings > 0 ? $pings : 1)")
sim_us_ping=$(fmt "%.0f" "($f1 - $f0) * 10000 / ($pings > 0 ? $pings : 1)")
echo "bench/idle: $N idle devices (0.6.2, connected and described in ${connect_s} s), one server, one fleet process"
echo "  server RSS: $((base / 1024)) MB empty, $((s_rss / 1024)) MB with $N sessions (peak of before/after the window): ${per_sess} KB per session incl. registry (target < 60 KB)"
echo "  simulator RSS: $((f_rss / 1024)) MB: $(fmt "%.1f" "$f_rss / $N") KB per device"
echo "  keep-alive at --time-scale $K: ~$pings pings in ${real} s real (one per device per 1380 s simulated)"
echo "  CPU during the window: server ${srv_pct} %, simulator ${sim_pct} % of one core;" \
  "~${us_ping} us server / ${sim_us_ping} us simulator per ping"
echo "  extrapolated, NOT measured: 10,000 devices at real time = $(fmt "%.1f" "10000 / 1380") pings/s:" \
  "server $(fmt "%.2f" "10000 / 1380 * $us_ping / 1e4") % of a core," \
  "server RSS ~$(fmt "%.0f" "($base + 10000 * ($s_rss - $base) / $N) / 1024") MB (device table is 1,024 today)"
awk "BEGIN {exit !($per_sess < 60)}" && echo "  target per session: met" || echo "  target per session: MISSED"
