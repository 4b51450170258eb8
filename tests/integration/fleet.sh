#!/usr/bin/env bash
# Integration: otalab-device fleets and faults against otalab-server --
# 20 devices (0.6.1:15, 0.4.8:5) in one process register over REST, connect
# and are described; a 2g link at --time-scale 50 reports the OTA's simulated
# time near the planner's 2g estimate; drop-link-at-chunk restarts the module
# from zero and still completes; corrupt-chunk recovers.
# usage: fleet.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir (otalab mkfixtures)}
T=$(mktemp -d /tmp/otalab-fleet.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${FAILED:-0}" = 1 ]; then
    for f in "$T"/*.log "$T"/*.out; do echo "--- $f"; tail -40 "$f"; done
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
TOKEN=otalab-fleet-test-token
AUTH="Authorization: Bearer $TOKEN"
S3="$FIX/system-part1-0.6.2-electron.bin" # s/3 v108, 54800 bytes
flash() { curl -s --max-time 10 -H "$AUTH" -X PUT -F "file=@$2" "http://127.0.0.1:$HTTP/v1/devices/$1"; }
fleet() { # name args...: a fleet in the background
  local name=$1; shift
  "$DEVICE" --server 127.0.0.1:$COAP --server-cert "$T/keys/server.crt.pem" \
    --api "http://127.0.0.1:$HTTP" --token $TOKEN --state-dir "$T/$name" \
    --fixtures "$FIX" "$@" >"$T/$name.out" 2>"$T/$name.log" &
  PIDS+=($!)
  LASTPID=$!
}

[ -f "$S3" ] || fail "no fixtures in $FIX"
"$OTALAB" keys server --out "$T/keys" >/dev/null || fail "otalab keys server"
mkdir -p "$T/data"
"$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/data" --token $TOKEN -v \
  >"$T/server.out" 2>"$T/server.log" &
PIDS+=($!)
wait_for 10 grep -q '^listening ' "$T/server.out" || fail "server did not start"
COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/server.out")
ok "server listening coap=$COAP http=$HTTP"

# --- a 2g link, 50x time: the simulated OTA time against the planner's.
# Without random loss: the server's timers run in real time, so one lost
# datagram would cost 50 x its real timeout in simulated time.
fleet g2 --count 1 --id-base f2ee00000000000000000001 --link 2g,loss=0,dup=0 --seed 7 --time-scale 50
G2=$LASTPID
wait_for 20 grep -q 'hello: acknowledged' "$T/g2.log" || fail "2g device did not connect"
sleep 1.5 # an OTA started at once paces by 2 s pings (server ota_tx: see report)
flash f2ee00000000000000000001 "$S3" | grep -q '"ok":true' || fail "2g: PUT refused"
wait_for 60 grep -q 'ota: received: ' "$T/g2.log" || fail "2g: OTA not received"
sim_ms=$(sed -n 's/.*ota: received: 54800 bytes in \([0-9]*\) ms simulated.*/\1/p' "$T/g2.log" | head -1)
# The planner's 2g time for 0.6.1 -> 0.6.2 minus its 3 reboots, pro rata.
est_ms=$("$OTALAB" plan --from 0.6.1 --to 0.6.2 --json | python3 -c '
import json, sys; p = json.load(sys.stdin)
print(int((p["seconds"]["2g"] - 30) * 1000 * 54800 / p["payload_bytes"]))')
python3 -c "import sys; r = $sim_ms / $est_ms; sys.exit(0 if 0.5 <= r <= 2.5 else 1)" ||
  fail "2g: simulated $sim_ms ms vs planner $est_ms ms"
ok "2g at 50x: s/3 (54800 B) in $sim_ms ms simulated; planner's 2g share $est_ms ms"
kill $G2

# --- 20 devices in one process: registered, connected, described.
fleet mix --count 20 --mix 0.6.1:15,0.4.8:5 --id-base f1ee00000000000000000000 --once -q
wait $LASTPID; rc=$?
[ $rc = 0 ] || fail "fleet exited $rc"
grep -q '^fleet: devices=20 ready=20 dead=0 full_hs=20' "$T/mix.out" || fail "fleet summary: $(tail -1 "$T/mix.out")"
n061=$(grep -c '^device .* release 0.6.1 ' "$T/mix.out")
n048=$(grep -c '^device .* release 0.4.8' "$T/mix.out")
[ "$n061" = 15 ] && [ "$n048" = 5 ] || fail "mix: $n061 x 0.6.1, $n048 x 0.4.8"
described=$(curl -s -H "$AUTH" "http://127.0.0.1:$HTTP/v1/devices" | python3 -c '
import json, sys
ds = json.load(sys.stdin)
ds = ds if isinstance(ds, list) else ds.get("devices", [])
print(sum(1 for d in ds if d.get("id", "").startswith("f1ee")))')
[ "$described" = 20 ] || fail "REST lists $described fleet devices, not 20"
for id in f1ee00000000000000000000 f1ee00000000000000000013; do
  curl -s -H "$AUTH" "http://127.0.0.1:$HTTP/v1/devices/$id" | python3 -c '
import json, sys; d = json.load(sys.stdin); sys.exit(0 if (d.get("describe") or {}).get("m") else 1)' ||
    fail "$id not described"
done
ok "fleet: 20 devices (15 x 0.6.1, 5 x 0.4.8) registered over REST, connected, described: $(grep -o 'image_mb=[^ ]*' "$T/mix.out") shared"

# --- faults: the link drops at chunk 20 (job restarts from zero), chunk 5 corrupted.
fleet drop --count 1 --id-base f3ee00000000000000000001 --fault drop-link-at-chunk:20:2000
fleet bad --count 1 --id-base f3ee00000000000000000002 --fault corrupt-chunk:5
wait_for 20 grep -q 'hello: acknowledged' "$T/drop.log" || fail "drop: no connect"
wait_for 20 grep -q 'hello: acknowledged' "$T/bad.log" || fail "bad: no connect"
flash f3ee00000000000000000002 "$S3" | grep -q '"ok":true' || fail "bad: PUT refused"
flash f3ee00000000000000000001 "$S3" | grep -q '"ok":true' || fail "drop: PUT refused"
wait_for 30 grep -q 'ota: verified 54800' "$T/bad.log" || fail "corrupt-chunk: OTA did not complete"
grep -q 'fault: corrupt-chunk:5' "$T/bad.log" || fail "corrupt-chunk: not injected"
ok "corrupt-chunk:5: flipped before the CRC check, resent, verified"
wait_for 20 grep -q 'fault: drop-link-at-chunk:20' "$T/drop.log" || fail "drop: not injected"
wait_for 20 grep -q 'connect: DTLS resumed' "$T/drop.log" || fail "drop: no resumed reconnect"
# The device's Hello (flag clear) during the transfer: the server restarts the job from zero.
wait_for 30 grep -q 'f3ee00000000000000000001 job [0-9]* (s/3 v108) SENDING => QUEUED' "$T/server.log" ||
  fail "drop: job not restarted at the new Hello"
wait_for 30 grep -q 'ota: verified 54800' "$T/drop.log" || fail "drop: OTA did not complete"
[ "$(grep -c 'ota: begin: 54800' "$T/drop.log")" -ge 2 ] || fail "drop: no second UpdateBegin"
ok "drop-link-at-chunk:20: link lost, resumed reconnect, job restarted from zero at the Hello, verified"
