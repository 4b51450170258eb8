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
. "$(dirname "$0")/lib.sh"
command -v tshark >/dev/null || otl_skip "tshark not installed (apt-get install tshark)"
otl_tmpdir cap
OTL_SHOW+=("$T/tshark.out")

otl_keys_server
otl_device_keys $ID
otl_register_file $ID
export SSLKEYLOGFILE="$T/keylog"
otl_start_server

tshark -i lo -f "udp port $COAP" -w "$T/cap.pcapng" >"$T/tshark.out" 2>&1 &
TSHARK=$!
otl_track $TSHARK
otl_wait_for 10 grep -q 'Capturing on' "$T/tshark.out" || otl_fail "tshark did not start capturing"

otl_start_device $ID --log dev --release 0.6.1
connected() { otl_dev_json $ID | grep -q '"connected": *true'; }
otl_wait_for 20 connected || otl_fail "device did not connect"
"$OTALAB" flash --server "$U" --quiet --timeout 60 $ID \
  "$FIX/system-part1-0.6.2-electron.bin" >"$T/flash.out" 2>&1 || { cat "$T/flash.out"; otl_fail "otalab flash"; }
otl_ok "flashed system-part1 (s/3) of 0.6.2 with the capture running"
sleep 0.5
kill -INT $TSHARK; wait $TSHARK 2>/dev/null
[ -s "$T/keylog" ] || otl_fail "no SSLKEYLOGFILE lines written"
grep -q '^CLIENT_RANDOM ' "$T/keylog" || otl_fail "key log has no CLIENT_RANDOM lines"
otl_ok "key log: $(grep -c '^CLIENT_RANDOM' "$T/keylog") CLIENT_RANDOM lines"

fields=$(tshark -r "$T/cap.pcapng" -o "tls.keylog_file:$T/keylog" \
  -d "udp.port==$COAP,dtls" -d "dtls.port==$COAP,coap" -Y coap \
  -T fields -e coap.opt.uri_path 2>/dev/null | sort | uniq -c)
echo "$fields" | sed 's/^/  /'
count() { echo "$fields" | awk -v p="$1" '$2 == p { print $1 }'; }
for p in h d u c; do
  n=$(count $p)
  [ -n "$n" ] && [ "$n" -gt 0 ] || otl_fail "no CoAP message with Uri-Path '$p' decoded"
done
chunks=$(count c)
expect=$(( (54800 + 511) / 512 ))
[ "$chunks" -ge "$expect" ] || otl_fail "decoded $chunks chunk messages, expected at least $expect"
otl_ok "tshark decodes DTLS carrying CoAP: h=$(count h) d=$(count d) u=$(count u) c=$chunks"
otl_pass
