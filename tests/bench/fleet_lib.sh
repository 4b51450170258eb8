# shellcheck shell=bash
# Shared setup of the fleet benchmarks fleet.sh and idle.sh (sourced, not run):
# the binaries, a temp dir removed at exit, die, cached device keys, the server.
#
# Use (BENCH names the messages and the temp dir; $1 is the build dir):
#   set -uo pipefail
#   BENCH=idle; . "$(dirname "$0")/fleet_lib.sh"
#   otb_prepare                     # fixtures?, ulimit -n, server keys, dirs, cached keys
#   otb_start_server [ARGS...]      # SPID COAP HTTP U
#   "$DEVICE" ... & FPID=$!         # cleanup kills SPID and FPID when set
#   otb_keep_keys                   # the fleet's new device keys into the cache
#
#   OTALAB_BENCH_CACHE=DIR device key pairs kept across runs (BUILD/bench-keys)
#   OTALAB_BENCH_TMP=DIR where the temp dir (server data, device state) goes:
#   default /dev/shm when present (the server fsyncs its job files at every queue
#   change; a disk's fsync latency, not CPU, would be measured), else /tmp
#   KEEP=1 keeps the temp dir.
# Sets B FIX OTALAB SERVER DEVICE CACHE TOKEN TMPD T, SPID= FPID=.
: "${1:?usage: $0 BUILD_DIR}"
B=$(cd "$1" && pwd)
FIX=$B/fixtures/bin
OTALAB=$B/cli/otalab
SERVER=$B/server/otalab-server
DEVICE=$B/device-sim/otalab-device
CACHE=${OTALAB_BENCH_CACHE:-$B/bench-keys}
TOKEN=otalab-bench-token
TMPD=${OTALAB_BENCH_TMP:-/tmp}
[ -z "${OTALAB_BENCH_TMP:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && TMPD=/dev/shm
T=$(mktemp -d "$TMPD/otalab-b$BENCH.XXXXXX")
SPID= FPID=
cleanup() {
  [ -n "$FPID" ] && kill "$FPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
die() {
  echo "bench/$BENCH: $*" >&2
  for f in "$T"/server.log "$T"/fleet.log; do [ -f "$f" ] && tail -15 "$f" >&2; done
  exit 1
}

# The fixtures must be built; one UDP socket per device needs open files; server
# keys; data and state dirs; device key pairs from an earlier run (otalab-device
# writes new ones into the state dir).
otb_prepare() {
  [ -f "$FIX/system-part1-0.6.2-electron.bin" ] || die "no fixtures in $FIX (build 'fixtures')"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null
  "$OTALAB" keys server --out "$T/keys" >/dev/null || die "otalab keys server"
  mkdir -p "$T/data" "$T/state" "$CACHE"
  cp "$CACHE"/*.pem "$T/state/" 2>/dev/null
}

# otalab-server on ephemeral ports with the bench token, more ARGS appended;
# waits for its `listening` line. Sets SPID, COAP, HTTP, U.
otb_start_server() {
  "$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --token $TOKEN \
    "$@" >"$T/server.out" 2>"$T/server.log" &
  SPID=$!
  for _ in $(seq 100); do grep -qs '^listening ' "$T/server.out" && break; sleep 0.1; done
  COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
  HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/server.out")
  [ -n "$COAP" ] || die "server did not start"
  U=http://127.0.0.1:$HTTP
}

otb_keep_keys() { cp -n "$T"/state/*.pem "$CACHE/" 2>/dev/null; }
