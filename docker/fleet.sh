#!/bin/sh
# Container entry for a small fleet: generates device keys, registers them with
# the server (DATA/devices/<id>.pub.pem on the shared volume) and runs each
# device once against the server (Hello, Describe). Exit 0 if all connected.
#   env: OTALAB_SERVER_ADDR (server:5684), FLEET_SIZE (1), OTALAB_KEYS (/keys),
#        OTALAB_DATA (/data), FLEET_WAIT (s to wait for the server cert, 60)
set -eu
KEYS=${OTALAB_KEYS:-/keys}
DATA=${OTALAB_DATA:-/data}
ADDR=${OTALAB_SERVER_ADDR:-server:5684}
N=${FLEET_SIZE:-1}
WORK=${FLEET_DIR:-/tmp/fleet}
i=0
while [ ! -s "$KEYS/server.crt.pem" ]; do
  i=$((i + 1))
  [ "$i" -le "${FLEET_WAIT:-60}" ] || { echo "fleet: no $KEYS/server.crt.pem" >&2; exit 1; }
  sleep 1
done
mkdir -p "$WORK" "$DATA/devices"
pids=""
i=0
while [ "$i" -lt "$N" ]; do
  id=$(printf 'e00f1ee7%016x' "$i")
  [ -s "$WORK/$id.key.pem" ] || otalab keys device --id "$id" --out "$WORK" >/dev/null
  cp "$WORK/$id.pub.pem" "$DATA/devices/$id.pub.pem"
  echo "fleet: registered $id"
  otalab-device --id "$id" --key "$WORK/$id.key.pem" --cert "$WORK/$id.crt.pem" \
    --server "$ADDR" --server-cert "$KEYS/server.crt.pem" \
    --state "$WORK/$id.state" --once "$@" &
  pids="$pids $!"
  i=$((i + 1))
done
fail=0
for p in $pids; do wait "$p" || fail=$((fail + 1)); done
echo "fleet: $N device(s), $((N - fail)) connected and described, $fail failed"
[ "$fail" = 0 ]
