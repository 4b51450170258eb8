#!/usr/bin/env bash
# Instruction counts of one OTA flash (0.6.1 -> 0.6.2, the three system parts,
# loopback, server defaults): otalab-server and otalab-device run under
# valgrind --tool=callgrind; the counters are zeroed once the device is
# described (handshake and boot excluded) and dumped after `otalab flash`
# returns. Prints instructions per chunk (512 B) for each side by category
# (profile_ota.py) and the top functions (inclusive) to OUT/{server,device}.txt.
# Counts are repeatable to ~1%, unlike wall-clock times on a shared machine.
# usage: profile_ota.sh BUILD_DIR [OUT_DIR]   (PROFILE=server|device|both)
set -uo pipefail
B=$(cd "${1:?build dir}" && pwd)
OUT=${2:-$(mktemp -d /tmp/otalab-prof.XXXXXX)}
mkdir -p "$OUT"
FIX=$B/fixtures/bin
OTALAB=$B/cli/otalab
SERVER=$B/server/otalab-server
DEVICE=$B/device-sim/otalab-device
WHO=${PROFILE:-both}
ID=0123456789abcdef01234567
TOKEN=otalab-prof-token
T=$(mktemp -d /tmp/otalab-prof-run.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
die() { echo "profile: $*" >&2; exit 1; }
VG=(valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no)
files=()
for p in 1 2 3; do files+=("$FIX/system-part$p-0.6.2-electron.bin"); done
BYTES=$(cat "${files[@]}" | wc -c)
CHUNKS=0
for f in "${files[@]}"; do CHUNKS=$((CHUNKS + ($(stat -c %s "$f") + 511) / 512)); done
"$OTALAB" keys server --out "$T/keys" >/dev/null || die "otalab keys server"
"$OTALAB" keys device --id $ID --out "$T/dev" >/dev/null || die "otalab keys device"
mkdir -p "$T/data/devices" && cp "$T/dev/$ID.pub.pem" "$T/data/devices/"
srv=("$SERVER")
dev=("$DEVICE")
case $WHO in both | server) srv=("${VG[@]}" --callgrind-out-file="$OUT/server.cg" "$SERVER") ;; esac
case $WHO in both | device) dev=("${VG[@]}" --callgrind-out-file="$OUT/device.cg" "$DEVICE") ;; esac
"${srv[@]}" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" -v \
  --token $TOKEN >"$T/srv.out" 2>"$OUT/server.log" &
spid=$!
PIDS+=($spid)
for ((i = 0; i < 300; i++)); do grep -q '^listening ' "$T/srv.out" && break; sleep 0.1; done
coap=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/srv.out")
http=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/srv.out")
[ -n "$http" ] || die "server did not start"
"${dev[@]}" --id $ID --key "$T/dev/$ID.key.pem" --cert "$T/dev/$ID.crt.pem" \
  --server 127.0.0.1:$coap --server-cert "$T/keys/server.crt.pem" \
  --state "$T/dev.state" --release 0.6.1 --fixtures "$FIX" \
  >"$T/dev.out" 2>"$OUT/device.log" &
dpid=$!
PIDS+=($dpid)
for ((i = 0; i < 600; i++)); do
  curl -s --max-time 2 -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$http/v1/devices/$ID" 2>/dev/null |
    grep -q '"system_firmware_version": *"0.6.1"' && break
  sleep 0.2
done
sleep 1
for p in $spid $dpid; do callgrind_control -z $p >/dev/null 2>&1; done
t0=$(date +%s%N)
"$OTALAB" flash --quiet --token $TOKEN --server "http://127.0.0.1:$http" $ID "${files[@]}" \
  >"$T/flash.out" 2>&1 || { cat "$T/flash.out" >&2; die "flash failed"; }
t1=$(date +%s%N)
for p in $spid $dpid; do callgrind_control -d $p >/dev/null 2>&1; done
sleep 1
kill $dpid $spid 2>/dev/null
wait $dpid $spid 2>/dev/null
echo "profile: $BYTES bytes, $CHUNKS chunks, flash $(((t1 - t0) / 1000000)) ms under valgrind"
grep -h 'timing:' "$OUT/server.log" | sed 's/^/  /'
for who in server device; do
  # the dump after the flash (the .cg.N file), else the final one
  f=$(ls -1 "$OUT/$who.cg".* 2>/dev/null | sort -V | head -1)
  [ -n "$f" ] || continue
  callgrind_annotate --inclusive=yes --threshold=99.5 "$f" >"$OUT/$who.txt" 2>/dev/null
  total=$(sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$OUT/$who.txt" | tr -d ,)
  printf 'profile: %-6s %12s Ir in the flash window, %d Ir/chunk all in (%s)\n' \
    "$who" "$total" $((total / CHUNKS)) "$OUT/$who.txt"
  python3 "$(dirname "$0")/profile_ota.py" "$who" "$f" "$CHUNKS"
done
