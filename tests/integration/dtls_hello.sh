#!/usr/bin/env bash
# Integration: otalab-server and otalab-device over standard DTLS 1.2 --
# registered device connects and is described, unregistered key refused, session resumed.
# usage: dtls_hello.sh OTALAB OTALAB_SERVER OTALAB_DEVICE
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
ID=0123456789abcdef01234567
BAD=feedfacecafebeef00112233
T=$(mktemp -d /tmp/otalab-dtls.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${FAILED:-0}" = 1 ]; then
    echo "--- server log"; cat "$T/server.log" 2>/dev/null
    for f in "$T"/dev*.log; do echo "--- $f"; cat "$f"; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
ok() { echo "ok: $*"; }

# Wait up to $1 seconds for command "$2..." to succeed.
wait_for() {
  local n=$(( $1 * 10 )); shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
dev_json() { curl -s --max-time 2 "http://127.0.0.1:$HTTP/v1/devices/$1"; }
connected_described() {
  local j; j=$(dev_json "$ID") || return 1
  echo "$j" | grep -q '"connected":true' && echo "$j" | grep -q '"v":105'
}
hellos_at_least() { dev_json "$ID" | grep -q "\"hellos\":$1"; }

"$OTALAB" keys server --out "$T/keys" >/dev/null || fail "otalab keys server"
"$OTALAB" keys device --id $ID --out "$T/dev" >/dev/null || fail "otalab keys device"
"$OTALAB" keys device --id $BAD --out "$T/bad" >/dev/null || fail "otalab keys device (bad)"
[ "$(stat -c %s "$T/keys/server.pub.der")" = 91 ] || fail "server.pub.der is not 91 bytes"
ok "keys generated (server.pub.der 91 bytes)"
mkdir -p "$T/data/devices" && cp "$T/dev/$ID.pub.pem" "$T/data/devices/"

"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --no-auth -v \
  >"$T/server.out" 2>"$T/server.log" &
PIDS+=($!)
wait_for 10 grep -q '^listening ' "$T/server.out" || fail "server did not start"
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/server.out")
ok "server listening coap=$COAP http=$HTTP"

dev_json $BAD | grep -q '"error"' || fail "unknown device is not 404"
ok "unknown device answers 404 JSON"

run_device() { # $1 = key dir, $2 = id, $3 = log name, $4 = state name
  "$DEVICE" --id "$2" --key "$1/$2.key.pem" --cert "$1/$2.crt.pem" \
    --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
    --state "$T/${4:-$3}.state" -v >"$T/$3.out" 2>"$T/$3.log" &
  PIDS+=($!)
  DEVPID=$!
}

run_device "$T/dev" $ID dev1
wait_for 20 connected_described || fail "device not connected+described within 20 s"
ok "device $ID connected, describe shows system modules v105"
grep -q 'full handshake' "$T/dev1.log" || fail "first handshake not full"
kill $DEVPID; wait $DEVPID 2>/dev/null
[ -s "$T/dev1.state" ] || fail "no saved session"
ok "session saved ($(stat -c %s "$T/dev1.state") bytes), $(tail -1 "$T/dev1.out")"

# An unregistered key claiming the registered id, then an unknown id.
cp "$T/bad/$BAD.key.pem" "$T/bad/$ID.key.pem"; cp "$T/bad/$BAD.crt.pem" "$T/bad/$ID.crt.pem"
run_device "$T/bad" $ID dev2
wait_for 10 grep -q "device $ID refused: DTLS key does not match" "$T/server.log" ||
  fail "server did not refuse the wrong key for $ID"
wait_for 20 sh -c "! kill -0 $DEVPID 2>/dev/null" || fail "refused device kept running"
wait $DEVPID; rc=$?
[ $rc = 1 ] || fail "refused device exit code $rc, want 1"
grep -qiE 'hello:? acknowledged' "$T/dev2.log" && fail "refused device got its Hello ACKed"
ok "wrong key for $ID refused (no ACK, session closed, device exit 1)"
run_device "$T/bad" $BAD dev3
wait_for 10 grep -q "device $BAD refused: no registered key" "$T/server.log" ||
  fail "server did not refuse unregistered $BAD"
wait $DEVPID
dev_json $BAD | grep -q '"error"' || fail "unregistered device visible in REST"
ok "unregistered device $BAD refused and unknown to REST"

# Restart with the saved session: resumed handshake, admitted again.
run_device "$T/dev" $ID dev4 dev1
wait_for 20 hellos_at_least 2 || fail "resumed device not admitted"
wait_for 5 connected_described || fail "resumed device not connected"
grep -q 'resumed handshake' "$T/dev4.log" || fail "handshake was not resumed"
ok "restarted device resumed its session and was admitted again"
grep 'handshake with' "$T/dev1.log" "$T/dev4.log" | sed 's/.* I dtls: /  /'
echo "PASS dtls_hello"
