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
. "$(dirname "$0")/lib.sh"
otl_tmpdir dtls

connected_described() {
  local j; j=$(otl_dev_json "$ID") || return 1
  echo "$j" | grep -q '"connected":true' && echo "$j" | grep -q '"v":105'
}
hellos_at_least() { otl_dev_json "$ID" | grep -q "\"hellos\":$1"; }

otl_keys_server
otl_device_keys $ID $BAD
[ "$(stat -c %s "$T/keys/server.pub.der")" = 91 ] || otl_fail "server.pub.der is not 91 bytes"
otl_ok "keys generated (server.pub.der 91 bytes)"
otl_register_file $ID

otl_start_server
otl_ok "server listening coap=$COAP http=$HTTP"

otl_dev_json $BAD | grep -q '"error"' || otl_fail "unknown device is not 404"
otl_ok "unknown device answers 404 JSON"

otl_start_device $ID --log dev1 --state "$T/dev1.state"
otl_wait_for 20 connected_described || otl_fail "device not connected+described within 20 s"
otl_ok "device $ID connected, describe shows system modules v105"
grep -q 'full handshake' "$T/dev1.log" || otl_fail "first handshake not full"
otl_kill $DEVPID
[ -s "$T/dev1.state" ] || otl_fail "no saved session"
otl_ok "session saved ($(stat -c %s "$T/dev1.state") bytes), $(tail -1 "$T/dev1.out")"

# An unregistered key claiming the registered id, then an unknown id.
mkdir -p "$T/wrong"
cp "$T/$BAD/$BAD.key.pem" "$T/wrong/$ID.key.pem"; cp "$T/$BAD/$BAD.crt.pem" "$T/wrong/$ID.crt.pem"
otl_start_device $ID --log dev2 --keys "$T/wrong" --state "$T/dev2.state"
otl_wait_for 10 grep -q "device $ID refused: DTLS key does not match" "$T/server.log" ||
  otl_fail "server did not refuse the wrong key for $ID"
otl_wait_for 20 sh -c "! kill -0 $DEVPID 2>/dev/null" || otl_fail "refused device kept running"
wait $DEVPID; rc=$?
[ $rc = 1 ] || otl_fail "refused device exit code $rc, want 1"
grep -qiE 'hello:? acknowledged' "$T/dev2.log" && otl_fail "refused device got its Hello ACKed"
otl_ok "wrong key for $ID refused (no ACK, session closed, device exit 1)"
otl_start_device $BAD --log dev3 --state "$T/dev3.state"
otl_wait_for 10 grep -q "device $BAD refused: no registered key" "$T/server.log" ||
  otl_fail "server did not refuse unregistered $BAD"
wait $DEVPID
otl_dev_json $BAD | grep -q '"error"' || otl_fail "unregistered device visible in REST"
otl_ok "unregistered device $BAD refused and unknown to REST"

# Restart with the saved session: resumed handshake, admitted again.
otl_start_device $ID --log dev4 --state "$T/dev1.state"
otl_wait_for 20 hellos_at_least 2 || otl_fail "resumed device not admitted"
otl_wait_for 5 connected_described || otl_fail "resumed device not connected"
grep -q 'resumed handshake' "$T/dev4.log" || otl_fail "handshake was not resumed"
otl_ok "restarted device resumed its session and was admitted again"
grep 'handshake with' "$T/dev1.log" "$T/dev4.log" | sed 's/.* I dtls: /  /'
otl_pass dtls_hello
