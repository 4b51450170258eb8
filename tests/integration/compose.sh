#!/usr/bin/env bash
# Integration: docker/compose.yaml under podman -- builds the image, runs the
# server and a fleet of 3 devices (keys, registration, Hello, Describe), checks
# the fleet's exit code, the server's log and the published REST port.
# The server runs with a fixed REST token (OTALAB_TOKEN).
# usage: compose.sh SOURCE_DIR. Exit 77 (skip) when podman is not set up here
# (run `eval "$(../shared/tools/container-env)"` once to set it up).
set -u
SRC=${1:?source dir}
LIMIT=${OTALAB_COMPOSE_TIMEOUT:-600} # seconds for build + run
. "$(dirname "$0")/lib.sh"
skip() { otl_skip "$@"; }

command -v podman >/dev/null 2>&1 || skip "podman not on PATH"
command -v podman-compose >/dev/null 2>&1 || skip "podman-compose not on PATH"
conf=/var/lib/container-env/containers.conf # written by container-env
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$conf" ]; then
  export CONTAINERS_CONF=$conf BUILDAH_ISOLATION=chroot
fi
if [ -z "${CONTAINERS_CONF:-}" ] &&
  ! podman image exists docker.io/library/debian:bookworm-slim 2>/dev/null; then
  skip "podman not set up (no CONTAINERS_CONF, no debian:bookworm-slim image)"
fi

P=otalabtest$$
export OTALAB_HTTP_PORT=$((20000 + $$ % 20000)) OTALAB_COAP_PORT=$((40000 + $$ % 20000))
export FLEET_SIZE=3
export OTALAB_TOKEN=otalab-compose-test-$$
otl_tmpdir compose
OTL_SHOW+=("$T/up.log")
compose_down() {
  timeout 120 podman-compose -p "$P" -f "$SRC/docker/compose.yaml" down -v \
    >"$T/down.log" 2>&1
}
otl_at_exit compose_down

# podman-compose 1.0 exits 255 after --abort-on-container-exit even when all
# went well: judge by the fleet's own exit code and the logs.
start=$(date +%s)
timeout "$LIMIT" podman-compose -p "$P" -f "$SRC/docker/compose.yaml" \
  up --build --abort-on-container-exit >"$T/up.log" 2>&1
rc=$?
[ $rc = 124 ] && otl_fail "compose up did not finish within $LIMIT s"
otl_ok "compose up --build finished in $(($(date +%s) - start)) s (podman-compose rc $rc)"

fleet_rc=$(podman inspect "${P}_fleet_1" --format '{{.State.ExitCode}}' 2>/dev/null) ||
  otl_fail "no fleet container ${P}_fleet_1"
[ "$fleet_rc" = 0 ] || otl_fail "fleet exit code $fleet_rc"
grep -q "fleet: $FLEET_SIZE device(s), $FLEET_SIZE connected and described, 0 failed" "$T/up.log" ||
  otl_fail "fleet summary missing"
otl_ok "fleet: $FLEET_SIZE devices connected and described, exit 0"

n=$(grep -c 'device e00f1ee7[0-9a-f]* Hello accepted' "$T/up.log")
[ "$n" -ge "$FLEET_SIZE" ] || otl_fail "server accepted $n Hellos, want $FLEET_SIZE"
grep -q 'describe ([0-9]* bytes)' "$T/up.log" || otl_fail "server logged no describe"
otl_ok "server accepted $n Hellos and logged the describes"

# podman-compose leaves the server running after the fleet exits (docker
# compose stops it): then check the published REST port from the host.
if [ "$(podman inspect "${P}_server_1" --format '{{.State.Running}}' 2>/dev/null)" = true ]; then
  j=$(curl -s --max-time 5 -H "Authorization: Bearer $OTALAB_TOKEN" "http://127.0.0.1:$OTALAB_HTTP_PORT/v1/devices/e00f1ee70000000000000000")
  echo "$j" | grep -q '"system_firmware_version"' ||
    otl_fail "REST on published port $OTALAB_HTTP_PORT: '$j'"
  otl_ok "REST on published port $OTALAB_HTTP_PORT shows the device (with the token)"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    "http://127.0.0.1:$OTALAB_HTTP_PORT/v1/devices/e00f1ee70000000000000000")
  [ "$code" = 401 ] || otl_fail "REST without the token: HTTP $code, want 401"
  otl_ok "REST without the token -> 401"
fi
