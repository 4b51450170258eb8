#!/usr/bin/env bash
# Integration: product firmware pushed end to end (PROTOCOL.md 7, 9; docs/PROTOCOL.md
# "Cloud behaviour choices", "Server OTA jobs"): a product releases an app built for
# 0.6.1; its device on 0.6.1 without it gets it at the handshake and runs it. The
# product then releases an app built for 0.6.2: the device gets it at its next
# handshake, boots into safe mode, the healer heals it to 0.6.2, the app runs.
# GET /v1/devices/:id `jobs` (the history) and the GET /v1/devices list fields.
# Then the server's per-request cancelling: a 0.4.8 developer device given
# 0.6.2's three parts in three PUTs sent back to back sees s/3 refused and s/1,
# s/2 still sent (PROTOCOL.md 6.1); the same three in ONE PUT: s/1, s/2 cancelled.
# A device that resets mid-transfer (new Hello, no UpdateDone yet): the job
# restarts from zero at once and completes.
# usage: product_release.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir (otalab mkfixtures)}
. "$(dirname "$0")/lib.sh"
otl_need curl python3
otl_tmpdir product-release
P=0e0000000000000000000001 # product device
S=0e0000000000000000000002 # 0.4.8 developer device, one PUT per part
M=0e0000000000000000000003 # 0.4.8 developer device, one multi-file PUT
R=0e0000000000000000000004 # resets mid-transfer
PRODUCT=4712
TOKEN=otalab-product-release-token
[ -f "$FIX/system-part1-0.6.2-electron.bin" ] || otl_fail "no fixtures in $FIX"

otl_keys_server
otl_device_keys $P $S $M $R
otl_register_file $S $M $R
"$OTALAB" mkapp --requires 0.6.1 --version 7 --seed 1 --out "$T/app061.bin" >/dev/null ||
  otl_fail "mkapp 0.6.1"
"$OTALAB" mkapp --requires 0.6.2 --version 8 --seed 2 --out "$T/app062.bin" >/dev/null ||
  otl_fail "mkapp 0.6.2"
otl_start_server --fixtures "$FIX"
otl_curl -f -d id=$PRODUCT -d name=widgets "$U/v1/products" >/dev/null || otl_fail "POST /v1/products"
otl_register_rest $P -d product_id=$PRODUCT -d name=widget-1
upload() { # version file
  otl_curl -f -F "binary=@$2" -F version="$1" -F title="v$1" \
    "$U/v1/products/$PRODUCT/firmware" >/dev/null || otl_fail "upload v$1"
  otl_curl -f -X PUT -H 'Content-Type: application/json' -d "{\"version\":$1}" \
    "$U/v1/products/$PRODUCT/firmware/release" >/dev/null || otl_fail "release v$1"
}
upload 1 "$T/app061.bin"
otl_ok "product $PRODUCT, device $P registered into it, firmware v1 (app for 0.6.1) released"

runs_app() { # id version: described, not in safe mode, u/1 at that module version
  otl_dev_has "$1" "d.get('connected') and d.get('safe_mode') is False and any(m['f']=='u' and m['v']==$2 for m in (d.get('describe') or {}).get('m',[]))"
}
last_boot() { grep 'boot:' "$T/$1.log" | tail -n 1; }

# --- 1. 0.6.1 device without an app gets release v1 at its handshake and runs it.
otl_start_device $P --log p1 --release 0.6.1
otl_wait_for 60 runs_app $P 7 || otl_fail "P: v1 not running: $(otl_dev_json $P | head -c 600)"
grep -q "ota: $P job [0-9]* queued (product): product-$PRODUCT-v1.bin u/1" "$T/server.log" ||
  otl_fail "P: no product job for v1"
last_boot p1 | grep -q SAFE_MODE && otl_fail "P: boots in safe mode: $(last_boot p1)"
otl_dev_has $P "d['jobs'][0]['origin']=='product' and d['jobs'][0]['result']=='ok' and d['jobs'][0]['file']=='product-$PRODUCT-v1.bin' and d['jobs'][0]['bytes']==$(stat -c %s "$T/app061.bin") and d['jobs'][0]['started_at'] and d['jobs'][0]['ended_at'] and d['jobs'][0]['data_usage']['total']>0" ||
  otl_fail "P: GET jobs[0] is not the product job: $(otl_dev_py $P "d['jobs']")"
otl_ok "P: got product firmware v1 at its handshake and runs it ($(last_boot p1 | sed 's/.*boot: //')); GET jobs[0] ok"

# --- 2. release v2 (app for 0.6.2): nothing until the next handshake, then safe mode, heal.
upload 2 "$T/app062.bin"
sleep 2
grep -q "ota: $P job [0-9]* queued (product): product-$PRODUCT-v2.bin" "$T/server.log" &&
  otl_fail "P: v2 pushed before the next handshake"
otl_kill "$DEVPID"
otl_start_device $P --log p2
otl_wait_for 30 grep -q "ota: $P job [0-9]* queued (product): product-$PRODUCT-v2.bin" "$T/server.log" ||
  otl_fail "P: v2 not queued at the next handshake"
otl_wait_for 60 grep -q 'boot: SAFE_MODE' "$T/p2.log" || otl_fail "P: no safe-mode boot after v2"
otl_ok "P: v2 queued at the next handshake, device boots into safe mode"
healed() { otl_dev_has $P "d.get('system_firmware_version')=='0.6.2' and d['healer']['state']=='DONE'" && runs_app $P 8; }
otl_wait_for 180 healed || otl_fail "P: not healed to 0.6.2 running v2: $(otl_dev_json $P | head -c 800)"
last_boot p2 | grep -q SAFE_MODE && otl_fail "P: still boots in safe mode: $(last_boot p2)"
order=$(otl_dev_py $P "' '.join(j['origin']+':'+j['module']['f']+'/'+j['module']['n'] for j in reversed(d['jobs']) if j['result']=='ok')")
[ "$order" = "product:u/1 product:u/1 healer:s/3 healer:s/1 healer:s/2" ] ||
  otl_fail "P: job history '$order'"
otl_ok "P: healed to 0.6.2, app v2 runs ($(last_boot p2 | sed 's/.*boot: //')); history: $order"
otl_curl "$U/v1/devices" | python3 -c "
import json, sys
row = [d for d in json.load(sys.stdin) if d['id'] == '$P'][0]
want = {'system_firmware_version': '0.6.2', 'connected': True, 'safe_mode': False,
        'product_id': $PRODUCT, 'development': False, 'ota': None}
bad = {k: row.get(k) for k in want if row.get(k) != want[k]}
sys.exit('list row: %s' % bad if bad else 0)" || otl_fail "P: GET /v1/devices row"
otl_ok "GET /v1/devices: system_firmware_version, connected, safe_mode, product_id, development, ota"
otl_kill "$DEVPID"

# --- 3. 0.4.8 developer device, s/3 s/1 s/2 of 0.6.2 in three PUTs back to back.
otl_start_device $S --log s1 --release 0.4.8 --link lte-m --seed 3
otl_wait_for 20 otl_has_module $S s/1 10 || otl_fail "S: not described on 0.4.8"
for p in 1 2 3; do
  otl_flash_rest $S "$FIX/system-part$p-0.6.2-electron.bin" | grep -q '"ok":true' ||
    otl_fail "S: PUT part $p refused"
done
mid() { otl_dev_py $S "' '.join(j['module']['f']+'/'+j['module']['n']+'='+j['state'] for j in reversed(d['jobs']))"; }
# s/3 refused after UpdateDone (the device resets, keeps its old firmware: the
# describe decides), s/1 and s/2 sent and applied; then the hard fault
# loop (PROTOCOL.md 6.1) keeps s/2's describe from coming: it stays REBOOTING.
sent_all() { [ "$(mid)" = "s/3=FAILED s/1=DONE s/2=REBOOTING" ] || [ "$(mid)" = "s/3=FAILED s/1=DONE s/2=DONE" ]; }
otl_wait_for 90 sent_all || otl_fail "S: jobs '$(mid)'"
grep -q "ota: $S job [0-9]* queued (user): system-part3-0.6.2-electron.bin s/2 v108, [0-9]* bytes (3 in queue" "$T/server.log" ||
  otl_fail "S: the three PUTs were not queued together"
grep -q 'needs 0.5.3 first' "$T/s1.log" || otl_fail "S: the device did not refuse s/3"
otl_dev_has $S "'lists no s/3' in d['jobs'][2]['why']" || otl_fail "S: s/3 job: $(otl_dev_py $S "d['jobs'][2]")"
otl_wait_for 30 grep -qs 'hard-fault-loop' "$T/s1.out" || otl_fail "S: no hard fault after s/1 and s/2"
otl_ok "S: three PUTs: s/3 refused, s/1 and s/2 still sent ($(mid)), then a hard fault"
otl_kill "$DEVPID"

# --- 4. the same three parts in ONE PUT: s/3 refused cancels s/1 and s/2.
otl_start_device $M --log m1 --release 0.4.8 --link lte-m --seed 4
otl_wait_for 20 otl_has_module $M s/1 10 || otl_fail "M: not described on 0.4.8"
otl_flash_rest $M "$FIX/system-part1-0.6.2-electron.bin" "$FIX/system-part2-0.6.2-electron.bin" \
  "$FIX/system-part3-0.6.2-electron.bin" | grep -q '"ok":true' || otl_fail "M: PUT refused"
res() { otl_dev_py $M "' '.join(j['module']['f']+'/'+j['module']['n']+'='+str(j.get('result')) for j in reversed(d['jobs']))"; }
otl_wait_for 60 eval '[ "$(res)" = "s/3=failed s/1=cancelled s/2=cancelled" ]' || otl_fail "M: jobs '$(res)'"
grep -q "ota: $M job [0-9]* .* cancelled: job [0-9]* of the same request failed" "$T/server.log" ||
  otl_fail "M: no cancel line"
otl_has_module $M s/1 10 || otl_fail "M: s/1 changed"
otl_ok "M: one PUT: $(res); device still on 0.4.8"
otl_kill "$DEVPID"

# --- 5. reset while receiving chunk 40: the next Hello restarts the job from zero.
otl_start_device $R --log r1 --release 0.6.1 --fault reset-during-ota:40
otl_wait_for 20 otl_has_module $R s/3 105 || otl_fail "R: not described"
T0=$(date +%s.%N)
otl_flash_rest $R "$FIX/system-part1-0.6.2-electron.bin" | grep -q '"ok":true' || otl_fail "R: PUT refused"
otl_wait_for 60 otl_has_module $R s/3 108 || otl_fail "R: s/3 not v108: $(otl_dev_py $R "d['jobs']")"
T1=$(date +%s.%N)
grep -q 'fault: reset-during-ota:40' "$T/r1.log" || otl_fail "R: the fault did not fire"
grep -q "ota: $R job [0-9]* (s/3 v108) SENDING => QUEUED (new Hello during the transfer .*restart 1 of 3" "$T/server.log" ||
  otl_fail "R: no restart at the Hello"
otl_dev_has $R "d['jobs'][0]['result']=='ok' and d['jobs'][0]['restarts']==1 and d['jobs'][0]['data_usage']['chunks_resent']>=40" ||
  otl_fail "R: job $(otl_dev_py $R "d['jobs'][0]")"
otl_ok "R: reset at chunk 40, restarted from zero at the Hello, done in $(python3 -c "print(round($T1-$T0,1))") s (restarts 1, resent chunks counted)"
otl_pass product_release
