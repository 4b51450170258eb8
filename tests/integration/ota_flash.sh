#!/usr/bin/env bash
# Integration: OTA over the air, otalab-server (ota_tx over libcoap) <-> otalab-device,
# driven by `otalab flash` through REST, with a UDP relay that counts the wire
# bytes and corrupts one firmware chunk (PROTOCOL.md 2.4-2.5, 9).
# usage: ota_flash.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
# Exit 77 (skipped) when the device has no OTA receiver yet (no --release option).
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir}
HERE=$(cd "$(dirname "$0")" && pwd)
ID=00aa11bb22cc33dd44ee55ff
. "$HERE/lib.sh"
if ! "$DEVICE" --help 2>&1 | grep -q -- '--release'; then
  otl_skip "otalab-device has no OTA receiver yet (no --release option)"
fi
otl_need python3
otl_tmpdir ota
OTL_SHOW+=("$T/relay.out")
for p in 1 2 3; do
  [ -f "$FIX/system-part$p-0.6.2-electron.bin" ] || otl_fail "missing fixture system-part$p-0.6.2"
done

jq_py() { otl_dev_py $ID "$1"; } # python expression over the device JSON `d`
mod_v() { jq_py "[m['v'] for m in d['modules'] if m['f']=='$1' and str(m['n'])=='$2'][0]"; }
sysver_is() { [ "$(jq_py "d['system_firmware_version']")" = "$1" ]; }
connected() { [ "$(jq_py "d['connected']")" = True ]; }
stats() { cat "$T/relay.stats" 2>/dev/null || echo "0 0 0 0 0"; }

otl_keys_server
otl_device_keys $ID
otl_register_file $ID

otl_start_server ${OTA_SERVER_ARGS:-}
python3 "$HERE/udp_relay.py" "$COAP" "$T" >"$T/relay.out" 2>&1 &
otl_track $!
otl_wait_for 10 grep -q '^relay ' "$T/relay.out" || otl_fail "relay did not start"
RELAY=$(sed -n 's/^relay \([0-9]*\)/\1/p' "$T/relay.out")
otl_ok "server coap=$COAP http=$HTTP, relay udp=$RELAY"

otl_start_device $ID --log dev --server 127.0.0.1:$RELAY --release 0.6.1
otl_wait_for 30 sysver_is 0.6.1 || otl_fail "device not connected and described as 0.6.1"
otl_ok "0.6.1 device connected via the relay, system_firmware_version 0.6.1"

# Refusals: unknown device 404, oversized upload 413, wrong platform 400.
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Expect:' -X PUT \
  -F file=@"$FIX/system-part1-0.6.2-electron.bin" \
  "http://127.0.0.1:$HTTP/v1/devices/ffffffffffffffffffffffff")
[ "$code" = 404 ] || otl_fail "unknown device: HTTP $code, want 404"
head -c 1100000 /dev/zero >"$T/big.bin"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Expect:' -X PUT \
  -F file=@"$T/big.bin" "http://127.0.0.1:$HTTP/v1/devices/$ID")
[ "$code" = 413 ] || otl_fail "1.1 MB upload: HTTP $code, want 413"
python3 - "$FIX/system-part2-0.6.2-electron.bin" "$T/photon.bin" <<'EOF'
import hashlib, struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read())
h = 0x184  # s/1 header offset; platform id at header + 12 (LE)
assert struct.unpack_from("<H", b, h + 12)[0] == 10
struct.pack_into("<H", b, h + 12, 6)  # Photon
n = len(b)
b[n - 38:n - 6] = hashlib.sha256(b[:n - 38]).digest()
struct.pack_into(">I", b, n - 4, zlib.crc32(bytes(b[:n - 4])) & 0xFFFFFFFF)
open(sys.argv[2], "wb").write(b)
EOF
H0=$(jq_py "d['hellos']")
resp=$(curl -s -w ' %{http_code}' -H 'Expect:' -X PUT -F file=@"$T/photon.bin" \
  -F file_type=binary "http://127.0.0.1:$HTTP/v1/devices/$ID")
case "$resp" in *' 400') ;; *) otl_fail "wrong platform: $resp, want 400" ;; esac
echo "$resp" | grep -qi 'platform' || otl_fail "wrong-platform error does not name the platform: $resp"
"$OTALAB" flash --server "$U" $ID "$T/photon.bin" >"$T/flash0.out" 2>&1
rc=$?
[ $rc = 1 ] || otl_fail "otalab flash of a wrong-platform module exit $rc, want 1"
sleep 0.5
sysver_is 0.6.1 && [ "$(jq_py "d['hellos']")" = "$H0" ] && [ "$(jq_py "d['last_ota']")" = None ] ||
  otl_fail "device changed after a refused upload"
grep -q "refused (400).*platform" "$T/server.log" || otl_fail "refusal not logged"
otl_ok "refusals: 404 unknown, 413 too large, 400 wrong platform (device unchanged, logged)"

# Flash system parts 1, 2, 3 of 0.6.2 one at a time (a reboot after each).
read -r d0 db0 u0 ub0 _ < <(stats)
t0=$(date +%s%N)
"$OTALAB" flash --server "$U" $ID "$FIX"/system-part{1,2,3}-0.6.2-electron.bin \
  >"$T/flash1.out" 2>&1 || { cat "$T/flash1.out"; otl_fail "otalab flash of 0.6.2 parts failed"; }
t1=$(date +%s%N)
sleep 1.2  # let the relay write its counters
read -r d1 db1 u1 ub1 _ < <(stats)
grep -q "flashed 3 modules to $ID: system firmware now 0.6.2" "$T/flash1.out" ||
  { cat "$T/flash1.out"; otl_fail "no final line naming 0.6.2"; }
for n in 1 2 3; do
  [ "$(mod_v s $n)" = 108 ] || otl_fail "s/$n is v$(mod_v s $n), want 108"
done
H1=$(jq_py "d['hellos']")
[ $((H1 - H0)) -ge 3 ] || otl_fail "expected a reboot (new Hello) per module: hellos $H0 -> $H1"
grep -c '% (' "$T/flash1.out" | grep -qv '^0$' || otl_fail "no progress lines"
otl_ok "0.6.1 -> 0.6.2: s/1 s/2 s/3 at 108, $((H1 - H0)) reboots, system_firmware_version 0.6.2"
xfer=$(grep -o 'job [0-9]* done: .*transfer [0-9]* ms' "$T/server.log" |
  sed 's/.*transfer \([0-9]*\) ms/\1/' | awk '{s += $1} END {print s}')
echo "figures: 3 parts 292800 module bytes; transfer time (UpdateBegin..UpdateDone 2.04," \
  "no reboots) ${xfer} ms; whole flash incl. 3 reboots $(((t1 - t0) / 1000000)) ms"
echo "figures: wire (relay, DTLS records incl. reconnects): down $((db1 - db0)) B in" \
  "$((d1 - d0)) datagrams, up $((ub1 - ub0)) B in $((u1 - u0)) datagrams"
sed -n 's/.*: \(flashed in .*\)/  \1/p' "$T/flash1.out"

# One chunk corrupted on the wire: DTLS drops the record, the loss path recovers.
"$OTALAB" mkapp --requires 0.6.2 --size 64K --out "$T/app.bin" >/dev/null || otl_fail "otalab mkapp"
touch "$T/flip"
"$OTALAB" flash --quiet --server "$U" $ID "$T/app.bin" >"$T/flash2.out" 2>&1 ||
  { cat "$T/flash2.out"; otl_fail "flash with a corrupted chunk failed"; }
sleep 1.2
read -r _ _ _ _ flipped < <(stats)
[ "$flipped" = 1 ] || otl_fail "the relay did not corrupt a chunk"
[ "$(mod_v u 1)" = 6 ] || otl_fail "user app not at v6 after the lossy flash"
resent=$(jq_py "d['last_ota']['chunks_resent']")
[ "${resent:-0}" -ge 1 ] || otl_fail "no chunk was resent after the corruption"
grep -q 'ChunkMissed\|CHUNK_MISSED\|missed' "$T/server.log" || echo "note: no ChunkMissed logged"
otl_ok "corrupted chunk dropped by DTLS, $resent chunk(s) resent, u/1 v6 installed"

# particle-cli 3.x uploads with Transfer-Encoding: chunked (no Content-Length).
"$OTALAB" mkapp --requires 0.6.2 --version 7 --out "$T/app7.bin" >/dev/null || otl_fail "otalab mkapp v7"
resp=$(curl -s -w ' %{http_code}' -H 'Expect:' -H 'Transfer-Encoding: chunked' -X PUT \
  -F file=@"$T/app7.bin" -F file_type=binary "http://127.0.0.1:$HTTP/v1/devices/$ID")
case "$resp" in *'"Update started"'*' 200') ;; *) otl_fail "chunked PUT flash: $resp, want 200" ;; esac
u1_is_7() { [ "$(mod_v u 1)" = 7 ]; }
otl_wait_for 60 u1_is_7 || otl_fail "u/1 not at v7 after the chunked PUT"
otl_ok "chunked multipart PUT (as particle-cli 3.x sends it): u/1 v7 installed"
sed 's/^/  relay: /' "$T/relay.out"
# Clean shutdown; under ASan/UBSan no server or device log may hold a report.
otl_pass ota_flash
