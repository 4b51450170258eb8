#!/usr/bin/env bash
# Integration: bad input on the CoAP/DTLS port never crashes otalab-server: random
# datagrams, a truncated DTLS record, a real DTLS peer (openssl s_client with a
# registered device certificate) sending non-CoAP bytes and a malformed Hello.
# Afterwards a real device is still admitted and described.
# usage: bad_input.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir}
ID=00aa11bb22cc33dd44ee5503
T=$(mktemp -d /tmp/otalab-bad.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ "${FAILED:-0}" = 1 ] && { echo "--- server log (tail)"; tail -n 30 "$T/server.log"; }
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
ok() { echo "ok: $*"; }
wait_for() { local n=$(( $1 * 10 )); shift; for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }

"$OTALAB" keys server --out "$T/keys" >/dev/null || fail "otalab keys server"
"$OTALAB" keys device --id $ID --out "$T/dev" >/dev/null || fail "otalab keys device"
mkdir -p "$T/data/devices" && cp "$T/dev/$ID.pub.pem" "$T/data/devices/"
"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --no-auth -v \
  >"$T/server.out" 2>"$T/server.log" &
SPID=$!
PIDS+=($SPID)
wait_for 10 grep -q '^listening ' "$T/server.out" || fail "server did not start"
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\).*/\1/p' "$T/server.out")
alive() { kill -0 $SPID 2>/dev/null || fail "server died: $*"; }

python3 - "$COAP" <<'PY' || fail "sending random datagrams"
import os, random, socket, sys
port = int(sys.argv[1]); rnd = random.Random(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(500):  # random bytes, 1..1400 long, some shaped like DTLS headers
    b = bytearray(os.urandom(rnd.randint(1, 1400)))
    if i % 3 == 0 and len(b) > 13: b[0] = rnd.choice([20, 21, 22, 23]); b[1:3] = b'\xfe\xfd'
    s.sendto(bytes(b), ('127.0.0.1', port))
# a ClientHello record header that promises more bytes than it carries
s.sendto(bytes([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00]) + b'\x01' * 10, ('127.0.0.1', port))
PY
sleep 0.3; alive "after random datagrams"
ok "500 random datagrams and a truncated DTLS record: server alive"

if command -v openssl >/dev/null; then
  # non-CoAP bytes, then a CON POST h with a 1-byte payload (malformed Hello)
  (printf 'GARBAGE\n'; sleep 0.3; printf '\x40\x02\x00\x01\xb1h\xff\x01'; sleep 0.7) |
    timeout 5 openssl s_client -dtls1_2 -cipher ECDHE-ECDSA-AES128-CCM8 \
      -connect 127.0.0.1:$COAP -cert "$T/dev/$ID.crt.pem" -key "$T/dev/$ID.key.pem" \
      -quiet >"$T/sclient.out" 2>&1
  alive "after a DTLS peer sent malformed CoAP"
  grep -q 'handshake complete' "$T/server.log" || fail "openssl s_client did not complete DTLS"
  wait_for 5 grep -qi 'malformed Hello' "$T/server.log" || fail "no log line for the malformed Hello"
  ok "DTLS peer with malformed CoAP and a 1-byte Hello: refused with a log line, server alive"
fi

"$DEVICE" --id $ID --key "$T/dev/$ID.key.pem" --cert "$T/dev/$ID.crt.pem" \
  --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
  --state "$T/dev.state" --release 0.6.1 --fixtures "$FIX" >"$T/dev.out" 2>"$T/dev.log" &
PIDS+=($!)
described() { curl -s --max-time 2 "http://127.0.0.1:$HTTP/v1/devices/$ID" | grep -q '"system_firmware_version": *"0.6.1"'; }
wait_for 20 described || fail "a real device was not admitted and described afterwards"
alive "at the end"
ok "a real device is still admitted and described as 0.6.1"
echo PASS
