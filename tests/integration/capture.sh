#!/usr/bin/env bash
# Integration: a capture of one OTA on loopback decodes in tshark as DTLS carrying
# CoAP, with the session keys that server and device write to SSLKEYLOGFILE, and
# shows the Uri-Paths PROTOCOL.md 2.2 names (h Hello, d Describe, u UpdateBegin/
# UpdateDone, c Chunk).
# usage: capture.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
# Exit 77 (skipped) when tshark is not installed.
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir}
ID=00aa11bb22cc33dd44ee5501
command -v tshark >/dev/null || { echo "SKIP: tshark not installed (apt-get install tshark)"; exit 77; }
T=$(mktemp -d /tmp/otalab-cap.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${FAILED:-0}" = 1 ]; then
    echo "--- server log (tail)"; tail -n 30 "$T/server.log" 2>/dev/null
    echo "--- device log (tail)"; tail -n 30 "$T/dev.log" 2>/dev/null
    echo "--- tshark"; cat "$T/tshark.out" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
ok() { echo "ok: $*"; }
wait_for() { local n=$(( $1 * 10 )); shift; for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }

"$OTALAB" keys server --out "$T/keys" >/dev/null || fail "otalab keys server"
"$OTALAB" keys device --id $ID --out "$T/dev" >/dev/null || fail "otalab keys device"
mkdir -p "$T/data/devices" && cp "$T/dev/$ID.pub.pem" "$T/data/devices/"
export SSLKEYLOGFILE="$T/keylog"
AUTH=()
"$SERVER" --help 2>&1 | grep -q -- '--no-auth' && AUTH=(--no-auth)
"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" "${AUTH[@]}" \
  >"$T/server.out" 2>"$T/server.log" &
PIDS+=($!)
wait_for 10 grep -q '^listening ' "$T/server.out" || fail "server did not start"
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\).*/\1/p' "$T/server.out")

tshark -i lo -f "udp port $COAP" -w "$T/cap.pcapng" >"$T/tshark.out" 2>&1 &
TSHARK=$!
PIDS+=($TSHARK)
wait_for 10 grep -q 'Capturing on' "$T/tshark.out" || fail "tshark did not start capturing"

"$DEVICE" --id $ID --key "$T/dev/$ID.key.pem" --cert "$T/dev/$ID.crt.pem" \
  --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
  --state "$T/dev.state" --release 0.6.1 --fixtures "$FIX" >"$T/dev.out" 2>"$T/dev.log" &
PIDS+=($!)
connected() { curl -s --max-time 2 "http://127.0.0.1:$HTTP/v1/devices/$ID" | grep -q '"connected": *true'; }
wait_for 20 connected || fail "device did not connect"
"$OTALAB" flash --server "http://127.0.0.1:$HTTP" --quiet --timeout 60 $ID \
  "$FIX/system-part1-0.6.2-electron.bin" >"$T/flash.out" 2>&1 || { cat "$T/flash.out"; fail "otalab flash"; }
ok "flashed system-part1 (s/3) of 0.6.2 with the capture running"
sleep 0.5
kill -INT $TSHARK; wait $TSHARK 2>/dev/null
[ -s "$T/keylog" ] || fail "no SSLKEYLOGFILE lines written"
grep -q '^CLIENT_RANDOM ' "$T/keylog" || fail "key log has no CLIENT_RANDOM lines"
ok "key log: $(grep -c '^CLIENT_RANDOM' "$T/keylog") CLIENT_RANDOM lines"

fields=$(tshark -r "$T/cap.pcapng" -o "tls.keylog_file:$T/keylog" \
  -d "udp.port==$COAP,dtls" -d "dtls.port==$COAP,coap" -Y coap \
  -T fields -e coap.opt.uri_path 2>/dev/null | sort | uniq -c)
echo "$fields" | sed 's/^/  /'
count() { echo "$fields" | awk -v p="$1" '$2 == p { print $1 }'; }
for p in h d u c; do
  n=$(count $p)
  [ -n "$n" ] && [ "$n" -gt 0 ] || fail "no CoAP message with Uri-Path '$p' decoded"
done
chunks=$(count c)
expect=$(( (54800 + 511) / 512 ))
[ "$chunks" -ge "$expect" ] || fail "decoded $chunks chunk messages, expected at least $expect"
ok "tshark decodes DTLS carrying CoAP: h=$(count h) d=$(count d) u=$(count u) c=$chunks"
echo "PASS"
