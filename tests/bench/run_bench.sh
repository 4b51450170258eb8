#!/usr/bin/env bash
# OTA throughput benchmark: the three system parts of 0.6.2 (~290 KB) over
# loopback, three ways, and the ratios between them:
#   ours     otalab-server (ota_tx over libcoap DTLS) -> otalab-device (mbedTLS,
#            ota_rx), REST PUT per module, the server's default (ack-clocked)
#            pacing; time = sum of the server's per-job times from UpdateBegin
#            to the UpdateDone 2.04 (device validation included), reboots
#            excluded; ours_data: the same runs, UpdateBegin to the last
#            window's ping ACK (every chunk received). The device's state file
#            lives on /dev/shm: its fsync is the simulator's, not OTA's.
#   libcoap  coap-server-openssl / coap-client-openssl, block-wise GET over
#            DTLS (PKI, certificates from `otalab keys`), 1024 and 512 bytes
#   udp      bench_udp: plain UDP, 512-byte payloads, stop-and-wait ack
# usage: run_bench.sh BUILD_DIR      (OTALAB_BENCH_REPS=N, default 5; median)
set -uo pipefail
B=$(cd "${1:?build dir}" && pwd)
FIX=$B/fixtures/bin
OTALAB=$B/cli/otalab
UDP=$B/tests/bench/bench_udp
SERVER=$B/server/otalab-server
DEVICE=$B/device-sim/otalab-device
REPS=${OTALAB_BENCH_REPS:-5}
ID=0123456789abcdef01234567
TOKEN=otalab-bench-token
T=$(mktemp -d /tmp/otalab-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/otalab-bench.XXXXXX 2>/dev/null || mktemp -d /tmp/otalab-bench-st.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$SHM"
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
die() { echo "bench: $*" >&2; exit 1; }
now_ns() { date +%s%N; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'; }
calc() { awk "BEGIN {printf \"%.4f\", $1}"; }

files=()
for p in 1 2 3; do
  f=$FIX/system-part$p-0.6.2-electron.bin
  [ -f "$f" ] || die "missing fixture $f (build the 'fixtures' target)"
  files+=("$f")
done
cat "${files[@]}" >"$T/blob.bin"
BYTES=$(stat -c %s "$T/blob.bin")
"$OTALAB" keys server --out "$T/keys" >/dev/null || die "otalab keys server"
"$OTALAB" keys device --id $ID --out "$T/dev" >/dev/null || die "otalab keys device"
echo "bench: 0.6.2 s/1 s/2 s/3, $BYTES bytes, loopback, median of $REPS runs"

declare -A SEC NOTE

# ---- plain UDP, stop-and-wait -------------------------------------------
for pl in 512 1024; do
  for ((i = 0; i < REPS; i++)); do
    "$UDP" --payload $pl "${files[@]}" | sed -n 's/.* seconds \([0-9.]*\) .*/\1/p'
  done >"$T/udp$pl"
  SEC[udp$pl]=$(median <"$T/udp$pl")
  [ -n "${SEC[udp$pl]}" ] || die "bench_udp failed"
done
NOTE[udp512]="plain UDP, 512 B payload, 1 ack per datagram, no crypto"
NOTE[udp1024]="plain UDP, 1024 B payload, 1 ack per datagram, no crypto"

# ---- libcoap block-wise GET over DTLS --------------------------------------
CS=$(command -v coap-server-openssl || true)
CC=$(command -v coap-client-openssl || true)
if [ -n "$CS" ] && [ -n "$CC" ]; then
  port=$((20000 + RANDOM % 20000))
  "$CS" -A 127.0.0.1 -p $port -d 8 -v 3 -c "$T/keys/server.crt.pem" \
    -j "$T/keys/server.key.pem" -n >"$T/coap-server.log" 2>&1 &
  PIDS+=($!)
  sleep 0.3
  url=coaps://127.0.0.1:$((port + 1))
  cli=("$CC" -B 10 -c "$T/dev/$ID.crt.pem" -j "$T/dev/$ID.key.pem" -n)
  head -c 16 /dev/zero >"$T/tiny.bin"
  # The blob 4 times over, so that the process start and handshake (measured
  # with a 16-byte GET and subtracted) weigh less; time scaled back to 1x.
  cat "$T/blob.bin" "$T/blob.bin" "$T/blob.bin" "$T/blob.bin" >"$T/blob4.bin"
  "${cli[@]}" -m put -b 1024 -f "$T/blob4.bin" "$url/ota" >/dev/null 2>&1 &&
    "${cli[@]}" -m put -f "$T/tiny.bin" "$url/tiny" >/dev/null 2>&1 ||
    die "libcoap PUT failed (see $T/coap-server.log)"
  for bs in 1024 512; do
    "${cli[@]}" -m get -b $bs -o "$T/got.bin" "$url/ota" >/dev/null 2>&1
    cmp -s "$T/got.bin" "$T/blob4.bin" || die "libcoap GET (block $bs) returned other bytes"
    for ((i = 0; i < REPS; i++)); do
      t0=$(now_ns)
      "${cli[@]}" -m get -b $bs -o "$T/got.bin" "$url/ota" >/dev/null 2>&1
      t1=$(now_ns)
      "${cli[@]}" -m get -b $bs -o "$T/got.tiny" "$url/tiny" >/dev/null 2>&1
      t2=$(now_ns)
      echo "$(calc "($t1 - $t0) / 1e9") $(calc "($t2 - $t1) / 1e9")"
    done >"$T/coap$bs"
    raw=$(awk '{print $1}' "$T/coap$bs" | median)
    fixed=$(awk '{print $2}' "$T/coap$bs" | median)
    SEC[coap$bs]=$(calc "($raw - $fixed) / 4")
    NOTE[coap$bs]="libcoap GET block $bs (szx $([ $bs = 1024 ] && echo 6 || echo 5)), DTLS PKI; 4x blob ${raw}s - process+handshake ${fixed}s, /4"
  done
else
  NOTE[coap1024]="skipped: coap-server-openssl/coap-client-openssl not installed (libcoap3-bin)"
fi

# ---- ours: otalab-server -> otalab-device ---------------------------------
ours_flash() { # run, server args...: fresh 0.6.1 device, flash the three parts
  local run=$1 http
  shift
  rm -rf "$T/srv$run" && mkdir -p "$T/srv$run/data/devices"
  cp "$T/dev/$ID.pub.pem" "$T/srv$run/data/devices/"
  "$SERVER" --coap-port 0 --http-port 0 --keys "$T/keys" --data "$T/srv$run/data" -v \
    --token $TOKEN "$@" >"$T/srv$run/out" 2>"$T/srv$run/log" &
  local spid=$!
  PIDS+=($spid)
  for ((i = 0; i < 100; i++)); do grep -q '^listening ' "$T/srv$run/out" && break; sleep 0.1; done
  local coap=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/srv$run/out")
  http=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\)/\1/p' "$T/srv$run/out")
  [ -n "$http" ] || { echo "server did not start" >&2; kill $spid; return 1; }
  "$DEVICE" --id $ID --key "$T/dev/$ID.key.pem" --cert "$T/dev/$ID.crt.pem" \
    --server 127.0.0.1:$coap --server-cert "$T/keys/server.crt.pem" \
    --state "$SHM/dev$run.state" --release 0.6.1 --fixtures "$FIX" \
    >"$T/srv$run/dev.out" 2>"$T/srv$run/dev.log" &
  local dpid=$!
  PIDS+=($dpid)
  for ((i = 0; i < 300; i++)); do
    curl -s --max-time 2 -H "Authorization: Bearer $TOKEN" \
      "http://127.0.0.1:$http/v1/devices/$ID" 2>/dev/null |
      grep -q '"system_firmware_version": *"0.6.1"' && break
    sleep 0.1
  done
  local t0=$(now_ns)
  "$OTALAB" flash --quiet --token $TOKEN --server "http://127.0.0.1:$http" $ID "${files[@]}" \
    >"$T/srv$run/flash.out" 2>&1 || { cat "$T/srv$run/flash.out" >&2; kill $spid $dpid; return 1; }
  local t1=$(now_ns)
  kill $dpid $spid 2>/dev/null
  wait $dpid $spid 2>/dev/null
  local jobs sums
  jobs=$(grep -c 'job [0-9]* done: ' "$T/srv$run/log")
  [ "$jobs" = 3 ] || { echo "server finished $jobs of 3 jobs" >&2; return 1; }
  # "timing: chunks in after D ms, UpdateDone 2.04 after F ms; ..."
  sums=$(sed -n 's/.*timing: chunks in after \([0-9.]*\) ms, UpdateDone 2.04 after \([0-9.]*\) ms.*/\1 \2/p' \
    "$T/srv$run/log" | awk '{d += $1; f += $2} END {printf "%.5f %.5f", f / 1000, d / 1000}')
  echo "$sums $(calc "($t1 - $t0) / 1e9")"
}
if [ -x "$SERVER" ] && [ -x "$DEVICE" ] && "$DEVICE" --help 2>&1 | grep -q -- '--release'; then
  # The server's defaults only: no tuning flags.
  for ((r = 0; r < REPS; r++)); do ours_flash ours$r || break; done >"$T/ours"
  if [ "$(wc -l <"$T/ours")" -ge 1 ]; then
    SEC[ours]=$(awk '{print $1}' "$T/ours" | median)
    SEC[ours_data]=$(awk '{print $2}' "$T/ours" | median)
    whole=$(awk '{print $3}' "$T/ours" | median)
    NOTE[ours]="otalab defaults: UpdateBegin..UpdateDone 2.04 (whole flash incl. 3 reboots ${whole}s)"
    NOTE[ours_data]="otalab defaults: UpdateBegin..last chunk in (same runs)"
  else
    NOTE[ours]="FAILED: see the logs (KEEP=1 keeps $T)"
  fi
else
  NOTE[ours]="pending: otalab-server/otalab-device with OTA not built"
fi

# ---- table -------------------------------------------------------------
printf '\n%-10s %10s %9s  %s\n' path seconds MB/s notes
for k in ours ours_data coap1024 coap512 udp512 udp1024; do
  s=${SEC[$k]:-}
  if [ -n "$s" ]; then
    printf '%-10s %10.4f %9.2f  %s\n' "$k" "$s" "$(calc "$BYTES / $s / 1e6")" "${NOTE[$k]:-}"
  else
    printf '%-10s %10s %9s  %s\n' "$k" - - "${NOTE[$k]:-}"
  fi
done
echo
ratio() { # name, numerator key, denominator key, target text
  if [ -n "${SEC[$2]:-}" ] && [ -n "${SEC[$3]:-}" ]; then
    printf '%-36s %6.2fx  (%s)\n' "$1" "$(calc "${SEC[$2]} / ${SEC[$3]}")" "$4"
  else
    printf '%-36s %6s   (%s)\n' "$1" - "$4; not measured"
  fi
}
ratio "libcoap block 1024 time / ours" coap1024 ours "target >= 2"
ratio "libcoap block 512 time / ours" coap512 ours "target >= 2"
ratio "ours time / plain UDP 512" ours udp512 "target <= 2"
ratio "libcoap block 512 time / ours_data" coap512 ours_data "target >= 2"
ratio "ours_data time / plain UDP 512" ours_data udp512 "target <= 2"
exit 0
