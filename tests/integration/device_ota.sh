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
D=0d0000000000000000000004 # server stops answering: retries with backoff
TOKEN=otalab-device-ota-test-token
. "$(dirname "$0")/lib.sh"
otl_tmpdir devota

[ -f "$FIX/system-part1-0.6.2-electron.bin" ] || otl_fail "no fixtures in $FIX"
[ -x "$DEVICE" ] && [ -x "$SERVER" ] || otl_fail "missing $DEVICE or $SERVER"
otl_keys_server
otl_device_keys $A $B $C $D
otl_register_file $A $B $C $D
otl_start_server
otl_ok "server listening coap=$COAP http=$HTTP"

# --- A: flash 0.6.2's system-part1 (s/3 v108) on 0.6.1, restart, still v108.
otl_start_device $A --log a1 --release 0.6.1
otl_wait_for 20 otl_has_module $A s/3 105 || otl_fail "A: 0.6.1 device not described"
otl_ok "A: 0.6.1 device connected (s/3 v105)"
otl_flash_rest $A "$FIX/system-part1-0.6.2-electron.bin" | grep -q '"ok":true' ||
  otl_fail "A: PUT refused"
otl_wait_for 60 otl_has_module $A s/3 108 || otl_fail "A: s/3 not v108 after the OTA"
for step in 'ota: begin' 'ota: progress 50%' 'ota: progress 100%' \
  'ota: verified' 'reboot: after the OTA update' 'boot: NO_APP' \
  'hello: sent (flags 0x01'; do
  grep -qF "$step" "$T/a1.log" || otl_fail "A: device log lacks '$step'"
done
otl_ok "A: OTA of s/3 v108 applied: begin, 25% steps, verified, reboot, Hello 0x01"
otl_kill $DEVPID
otl_start_device $A --log a2 --time-scale 1000 # keep-alive every 1.4 s
otl_wait_for 20 grep -q 'state: loaded' "$T/a2.log" || otl_fail "A: state not loaded"
otl_wait_for 20 otl_has_module $A s/3 108 || otl_fail "A: s/3 back to old version after restart"
grep -q 'hello: sent (flags 0x00' "$T/a2.log" || otl_fail "A: OTA flag not cleared"
otl_wait_for 10 grep -q 'keep-alive: ping acknowledged' "$T/a2.log" ||
  otl_fail "A: no keep-alive ping acknowledged (--time-scale 1000)"
otl_kill $DEVPID
otl_ok "A: restarted device reloaded its flash: s/3 still v108, Hello flag 0, keep-alive ping ACKed"

# --- B: 0.5.1 + 0.6.0's s/1 and s/2 (REST) -> hard-fault loop, --recover s/3.
otl_start_device $B --log b1 --release 0.5.1
otl_wait_for 20 otl_has_module $B s/2 15 || otl_fail "B: 0.5.1 device not described"
otl_flash_rest $B "$FIX/system-part2-0.6.0-electron.bin" "$FIX/system-part3-0.6.0-electron.bin" |
  grep -q '"ok":true' || otl_fail "B: PUT refused"
otl_wait_for 90 sh -c "! kill -0 $DEVPID 2>/dev/null" || otl_fail "B: device still running"
wait $DEVPID; rc=$?
[ $rc = 3 ] || otl_fail "B: exit code $rc, want 3 (hard-fault loop)"
grep -q 'HARD FAULT LOOP' "$T/b1.log" || otl_fail "B: hard fault not reported"
grep -q '^hard-fault-loop: ' "$T/b1.out" || otl_fail "B: no hard-fault line on stdout"
otl_ok "B: 0.5.1 + 0.6.0 s/1,s/2 -> $(grep -m1 '^hard-fault-loop' "$T/b1.out")"
otl_start_device $B --log b2
wait $DEVPID; rc=$?
[ $rc = 3 ] || otl_fail "B: restart without --recover: exit $rc, want 3"
grep -q 'connect:' "$T/b2.log" && otl_fail "B: hard-faulting device connected"
otl_ok "B: restarted without --recover: still hard-faulting, never connects (exit 3)"
otl_start_device $B --log b3 --recover "$FIX/system-part1-0.6.0-electron.bin"
otl_wait_for 30 otl_has_module $B s/3 102 || otl_fail "B: not recovered"
otl_has_module $B s/2 102 || otl_fail "B: s/2 not v102 after recovery"
grep -q 'recover: DFU' "$T/b3.log" || otl_fail "B: no DFU log"
otl_kill $DEVPID
otl_ok "B: --recover s/3 v102 -> boots 0.6.0 and connects"

# --- C: user app built for 0.6.2 flashed to 0.6.1 -> safe mode.
"$OTALAB" mkapp --requires 0.6.2 --out "$T/app062.bin" >/dev/null || otl_fail "mkapp"
otl_start_device $C --log c1 --release 0.6.1
otl_wait_for 20 otl_has_module $C s/2 105 || otl_fail "C: device not described"
otl_flash_rest $C "$T/app062.bin" | grep -q '"ok":true' || otl_fail "C: PUT app refused"
otl_wait_for 60 grep -q 'boot: SAFE_MODE' "$T/c1.log" || otl_fail "C: no safe mode"
otl_wait_for 20 grep -q 'event: published spark/device/safemode' "$T/c1.log" ||
  otl_fail "C: spark/device/safemode not published"
safe_in_describe() {
  otl_dev_json $C | python3 -c '
import json, sys
d = json.load(sys.stdin)
u = [m for m in (d.get("describe") or {}).get("m", []) if m.get("f") == "u"]
sys.exit(0 if u and u[0]["vv"] != u[0]["vc"] and not u[0]["vv"] & 4 else 1)'
}
otl_wait_for 20 safe_in_describe || otl_fail "C: describe does not show the failed user module"
otl_ok "C: app for 0.6.2 on 0.6.1 -> SAFE_MODE, spark/device/safemode published, describe u vv!=vc"
otl_kill $DEVPID

# --- D: the server stops answering (SIGSTOP) while the device is online: the
# keep-alive ping fails, each reconnect's handshake times out (timers shortened
# to 100+200+400 ms by OTALAB_DEVICE_HS_TIMEOUT), and the device keeps retrying
# with backoff (5 s, 10 s ... device time) until the server answers again.
# A first connect nobody answers ends the process: exit 1 with a message.
export OTALAB_DEVICE_HS_TIMEOUT=100:400
otl_start_device $D --log d1 --time-scale 1000
otl_wait_for 20 grep -q 'keep-alive: ping acknowledged' "$T/d1.log" ||
  otl_fail "D: device not connected"
kill -STOP $SPID
otl_wait_for 40 grep -q 'connect: attempt 4 failed: retry in 40 s' "$T/d1.log" ||
  { kill -CONT $SPID; otl_fail "D: no 4th failed reconnect with a 40 s backoff"; }
kill -CONT $SPID
kill -0 $DEVPID 2>/dev/null || otl_fail "D: device exited while the server was stopped"
n=$(grep -c 'hello: acknowledged' "$T/d1.log")
otl_wait_for 60 sh -c "[ \$(grep -c 'hello: acknowledged' '$T/d1.log') -gt $n ]" ||
  otl_fail "D: no new session once the server answered again"
otl_kill $DEVPID
otl_ok "D: server stopped: $(grep -c 'connect: attempt' "$T/d1.log") reconnects failed (backoff $(grep -o 'retry in [0-9]* s' "$T/d1.log" | awk '{printf "%s ", $3}')s), then connected again"
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
otl_start_device $D --log d2 --server 127.0.0.1:$PORT --state "$T/d2.state"
otl_wait_for 20 sh -c "! kill -0 $DEVPID 2>/dev/null" || otl_fail "D: unanswered first connect still running"
wait $DEVPID; rc=$?
[ $rc = 1 ] || otl_fail "D: unanswered first connect: exit $rc, want 1"
grep -q 'connect: no session with 127.0.0.1:'$PORT'.*giving up, exit 1' "$T/d2.log" ||
  otl_fail "D: no 'giving up' message"
otl_ok "D: a first connect nobody answers: exit 1 ($(grep -o 'connect: no session.*' "$T/d2.log"))"
unset OTALAB_DEVICE_HS_TIMEOUT
otl_pass device_ota
