#!/bin/sh
# Container entry for otalab-server: creates the server key pair in /keys on
# first start (shared with the fleet through a volume), then runs the server.
#   env: OTALAB_KEYS (/keys), OTALAB_DATA (/data), OTALAB_TOKEN (a fixed REST
#        access token, --token; unset: log in with the user printed at first start)
set -eu
KEYS=${OTALAB_KEYS:-/keys}
DATA=${OTALAB_DATA:-/data}
mkdir -p "$KEYS" "$DATA/devices"
if [ ! -s "$KEYS/server.crt.pem" ]; then
  otalab keys server --out "$KEYS"
fi
if [ -n "${OTALAB_TOKEN:-}" ]; then set -- --token "$OTALAB_TOKEN" "$@"; fi
exec otalab-server --bind 0.0.0.0 --keys "$KEYS" --data "$DATA" "$@"
