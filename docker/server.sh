#!/bin/sh
# Container entry for otalab-server: creates the server key pair in /keys on
# first start (shared with the fleet through a volume), then runs the server.
set -eu
KEYS=${OTALAB_KEYS:-/keys}
DATA=${OTALAB_DATA:-/data}
mkdir -p "$KEYS" "$DATA/devices"
if [ ! -s "$KEYS/server.crt.pem" ]; then
  otalab keys server --out "$KEYS"
fi
exec otalab-server --bind 0.0.0.0 --keys "$KEYS" --data "$DATA" "$@"
