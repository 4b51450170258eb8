#!/usr/bin/env bash
# Integration: otalab-server + otalab-device running OTA end to end --
# the state file survives a restart, a 0.5.1 device hard-faults on 0.6.0's
# parts and --recover brings it back, an app for 0.6.2 on 0.6.1 -> safe mode.
# usage: device_ota.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir (otalab mkfixtures)}
A=0a0000000000000000000001 # restart keeps the flash
B=0b0000000000000000000002 # 0.5.1 -> hard fault -> recover
C=0c0000000000000000000003 # safe mode
T=$(mktemp -d /tmp/otalab-devota.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${FAILED:-0}" = 1 ]; then
    echo "--- server log"; cat "$T/server.log" 2>/dev/null
    for f in "$T"/*.log; do [ "$f" = "$T/server.log" ] || { echo "--- $f"; cat "$f"; }; done
  fi
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
ok() { echo "ok: $*"; }
wait_for() { # seconds command...
  local n=$(( $1 * 10 )); shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
TOKEN=otalab-device-ota-test-token
AUTH="Authorization: Bearer $TOKEN"
dev_json() { curl -s --max-time 2 -H "$AUTH" "http://127.0.0.1:$HTTP/v1/devices/$1"; }
# module $1 = id, $2 = "f/n", $3 = version: the REST describe lists it (and the
# device is connected).
has_module() {
  dev_json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin); f, n = sys.argv[1].split("/")
mods = (d.get("describe") or {}).get("m", [])
ok = d.get("connected") and any(m.get("f") == f and m.get("n") == n and m.get("v") == int(sys.argv[2]) for m in mods)
sys.exit(0 if ok else 1)' "$2" "$3" 2>/dev/null
}
flash() { # id file... -> REST PUT multipart
  local id=$1; shift; local args=()
  for f in "$@"; do args+=(-F "file=@$f"); done
  curl -s --max-time 10 -H "$AUTH" -X PUT "${args[@]}" "http://127.0.0.1:$HTTP/v1/devices/$id"
}
run_device() { # id log-name extra args...
  local id=$1 log=$2; shift 2
  "$DEVICE" --id "$id" --key "$T/$id/$id.key.pem" --cert "$T/$id/$id.crt.pem" \
    --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
    --state "$T/$id.state" --fixtures "$FIX" "$@" -v >"$T/$log.out" 2>"$T/$log.log" &
  DEVPID=$!
  PIDS+=($DEVPID)
}

[ -f "$FIX/system-part1-0.6.2-electron.bin" ] || fail "no fixtures in $FIX"
[ -x "$DEVICE" ] && [ -x "$SERVER" ] || fail "missing $DEVICE or $SERVER"
"$OTALAB" keys server --out "$T/keys" >/dev/null || fail "otalab keys server"
mkdir -p "$T/data/devices"
for id in $A $B $C; do
  "$OTALAB" keys device --id $id --out "$T/$id" >/dev/null || fail "keys $id"
  cp "$T/$id/$id.pub.pem" "$T/data/devices/"
done
"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --token $TOKEN -v \
  >"$T/server.out" 2>"$T/server.log" &
PIDS+=($!)
wait_for 10 grep -q '^listening ' "$T/server.out" || fail "server did not start"
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/server.out")
ok "server listening coap=$COAP http=$HTTP"

# --- A: flash 0.6.2's system-part1 (s/3 v108) on 0.6.1, restart, still v108.
run_device $A a1 --release 0.6.1
wait_for 20 has_module $A s/3 105 || fail "A: 0.6.1 device not described"
ok "A: 0.6.1 device connected (s/3 v105)"
flash $A "$FIX/system-part1-0.6.2-electron.bin" | grep -q '"ok":true' ||
  fail "A: PUT refused"
wait_for 60 has_module $A s/3 108 || fail "A: s/3 not v108 after the OTA"
for step in 'ota: begin' 'ota: progress 50%' 'ota: progress 100%' \
  'ota: verified' 'reboot: after the OTA update' 'boot: NO_APP' \
  'hello: sent (flags 0x01'; do
  grep -qF "$step" "$T/a1.log" || fail "A: device log lacks '$step'"
done
ok "A: OTA of s/3 v108 applied: begin, 25% steps, verified, reboot, Hello 0x01"
kill $DEVPID; wait $DEVPID 2>/dev/null
run_device $A a2 --time-scale 1000 # keep-alive every 1.4 s
wait_for 20 grep -q 'state: loaded' "$T/a2.log" || fail "A: state not loaded"
wait_for 20 has_module $A s/3 108 || fail "A: s/3 back to old version after restart"
grep -q 'hello: sent (flags 0x00' "$T/a2.log" || fail "A: OTA flag not cleared"
wait_for 10 grep -q 'keep-alive: ping acknowledged' "$T/a2.log" ||
  fail "A: no keep-alive ping acknowledged (--time-scale 1000)"
kill $DEVPID; wait $DEVPID 2>/dev/null
ok "A: restarted device reloaded its flash: s/3 still v108, Hello flag 0, keep-alive ping ACKed"

# --- B: 0.5.1 + 0.6.0's s/1 and s/2 (REST) -> hard-fault loop, --recover s/3.
run_device $B b1 --release 0.5.1
wait_for 20 has_module $B s/2 15 || fail "B: 0.5.1 device not described"
flash $B "$FIX/system-part2-0.6.0-electron.bin" "$FIX/system-part3-0.6.0-electron.bin" |
  grep -q '"ok":true' || fail "B: PUT refused"
wait_for 90 sh -c "! kill -0 $DEVPID 2>/dev/null" || fail "B: device still running"
wait $DEVPID; rc=$?
[ $rc = 3 ] || fail "B: exit code $rc, want 3 (hard-fault loop)"
grep -q 'HARD FAULT LOOP' "$T/b1.log" || fail "B: hard fault not reported"
grep -q '^hard-fault-loop: ' "$T/b1.out" || fail "B: no hard-fault line on stdout"
ok "B: 0.5.1 + 0.6.0 s/1,s/2 -> $(grep -m1 '^hard-fault-loop' "$T/b1.out")"
run_device $B b2
wait $DEVPID; rc=$?
[ $rc = 3 ] || fail "B: restart without --recover: exit $rc, want 3"
grep -q 'connect:' "$T/b2.log" && fail "B: hard-faulting device connected"
ok "B: restarted without --recover: still hard-faulting, never connects (exit 3)"
run_device $B b3 --recover "$FIX/system-part1-0.6.0-electron.bin"
wait_for 30 has_module $B s/3 102 || fail "B: not recovered"
has_module $B s/2 102 || fail "B: s/2 not v102 after recovery"
grep -q 'recover: DFU' "$T/b3.log" || fail "B: no DFU log"
kill $DEVPID; wait $DEVPID 2>/dev/null
ok "B: --recover s/3 v102 -> boots 0.6.0 and connects"

# --- C: user app built for 0.6.2 flashed to 0.6.1 -> safe mode.
"$OTALAB" mkapp --requires 0.6.2 --out "$T/app062.bin" >/dev/null || fail "mkapp"
run_device $C c1 --release 0.6.1
wait_for 20 has_module $C s/2 105 || fail "C: device not described"
flash $C "$T/app062.bin" | grep -q '"ok":true' || fail "C: PUT app refused"
wait_for 60 grep -q 'boot: SAFE_MODE' "$T/c1.log" || fail "C: no safe mode"
wait_for 20 grep -q 'event: published spark/device/safemode' "$T/c1.log" ||
  fail "C: spark/device/safemode not published"
safe_in_describe() {
  dev_json $C | python3 -c '
import json, sys
d = json.load(sys.stdin)
u = [m for m in (d.get("describe") or {}).get("m", []) if m.get("f") == "u"]
sys.exit(0 if u and u[0]["vv"] != u[0]["vc"] and not u[0]["vv"] & 4 else 1)'
}
wait_for 20 safe_in_describe || fail "C: describe does not show the failed user module"
ok "C: app for 0.6.2 on 0.6.1 -> SAFE_MODE, spark/device/safemode published, describe u vv!=vc"
echo "PASS device_ota"
