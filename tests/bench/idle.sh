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
#   OTALAB_BENCH_CACHE=DIR device key pairs kept across runs (BUILD/bench-keys)
# Target: server RSS per idle session < 60 KB.
set -uo pipefail
B=$(cd "${1:?build dir}" && pwd)
FIX=$B/fixtures/bin
OTALAB=$B/cli/otalab
SERVER=$B/server/otalab-server
DEVICE=$B/device-sim/otalab-device
N=${OTALAB_BENCH_DEVICES:-1000}
K=${OTALAB_BENCH_SCALE:-1000}
W=${OTALAB_BENCH_WINDOW:-20}
CACHE=${OTALAB_BENCH_CACHE:-$B/bench-keys}
TOKEN=otalab-bench-token
IDBASE=1d1e00000000000000000000
TMPD=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && TMPD=/dev/shm
T=$(mktemp -d "$TMPD/otalab-bidle.XXXXXX")
SPID= FPID=
cleanup() {
  [ -n "$FPID" ] && kill "$FPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
die() {
  echo "bench/idle: $*" >&2
  for f in "$T"/server.log "$T"/fleet.log; do [ -f "$f" ] && tail -15 "$f" >&2; done
  exit 1
}
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
cpu_cs() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime+stime, 1/100 s
fmt() { awk "BEGIN {printf \"$1\", $2}"; }

[ -f "$FIX/system-part1-0.6.2-electron.bin" ] || die "no fixtures in $FIX (build 'fixtures')"
ulimit -n "$(ulimit -Hn)" 2>/dev/null
"$OTALAB" keys server --out "$T/keys" >/dev/null || die "otalab keys server"
mkdir -p "$T/data" "$T/state" "$CACHE"
cp "$CACHE"/*.pem "$T/state/" 2>/dev/null
"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --token $TOKEN \
  >"$T/server.out" 2>"$T/server.log" &
SPID=$!
for _ in $(seq 100); do grep -qs '^listening ' "$T/server.out" && break; sleep 0.1; done
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/server.out")
[ -n "$COAP" ] || die "server did not start"
base=$(rss_kb $SPID)

"$DEVICE" --count "$N" --mix 0.6.2:1 --id-base $IDBASE \
  --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
  --api "http://127.0.0.1:$HTTP" --token $TOKEN --state-dir "$T/state" --fixtures "$FIX" \
  --connect-rate 200 --max-handshakes 24 --time-scale "$K" -q >"$T/fleet.out" 2>"$T/fleet.log" &
FPID=$!
t0=$(date +%s)
until [ "$(grep -c '^.* describe ([0-9]* bytes)' "$T/server.log")" -ge "$N" ]; do
  kill -0 $FPID 2>/dev/null || die "fleet exited"
  [ $(($(date +%s) - t0)) -lt 120 ] || die "not all $N described in 120 s"
  sleep 0.5
done
connect_s=$(($(date +%s) - t0))
cp -n "$T"/state/*.pem "$CACHE/" 2>/dev/null
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
