#!/usr/bin/env bash
# Integration: docker/compose.yaml under podman -- builds the image, runs the
# server and a fleet of 3 devices (keys, registration, Hello, Describe), checks
# the fleet's exit code, the server's log and the published REST port.
# usage: compose.sh SOURCE_DIR. Exit 77 (skip) when podman is not set up here
# (run `eval "$(../shared/tools/container-env)"` once to set it up).
set -u
SRC=${1:?source dir}
LIMIT=${OTALAB_COMPOSE_TIMEOUT:-600} # seconds for build + run
skip() { echo "SKIP: $*"; exit 77; }

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
T=$(mktemp -d /tmp/otalab-compose.XXXXXX)
compose() { podman-compose -p "$P" -f "$SRC/docker/compose.yaml" "$@"; }
cleanup() {
  [ "${FAILED:-0}" = 1 ] && { echo "--- compose log (tail)"; tail -60 "$T/up.log"; }
  timeout 120 podman-compose -p "$P" -f "$SRC/docker/compose.yaml" down -v \
    >"$T/down.log" 2>&1
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
ok() { echo "ok: $*"; }

# podman-compose 1.0 exits 255 after --abort-on-container-exit even when all
# went well: judge by the fleet's own exit code and the logs.
start=$(date +%s)
timeout "$LIMIT" podman-compose -p "$P" -f "$SRC/docker/compose.yaml" \
  up --build --abort-on-container-exit >"$T/up.log" 2>&1
rc=$?
[ $rc = 124 ] && fail "compose up did not finish within $LIMIT s"
ok "compose up --build finished in $(($(date +%s) - start)) s (podman-compose rc $rc)"

fleet_rc=$(podman inspect "${P}_fleet_1" --format '{{.State.ExitCode}}' 2>/dev/null) ||
  fail "no fleet container ${P}_fleet_1"
[ "$fleet_rc" = 0 ] || fail "fleet exit code $fleet_rc"
grep -q "fleet: $FLEET_SIZE device(s), $FLEET_SIZE connected and described, 0 failed" "$T/up.log" ||
  fail "fleet summary missing"
ok "fleet: $FLEET_SIZE devices connected and described, exit 0"

n=$(grep -c 'device e00f1ee7[0-9a-f]* Hello accepted' "$T/up.log")
[ "$n" -ge "$FLEET_SIZE" ] || fail "server accepted $n Hellos, want $FLEET_SIZE"
grep -q 'describe ([0-9]* bytes)' "$T/up.log" || fail "server logged no describe"
ok "server accepted $n Hellos and logged the describes"

# podman-compose leaves the server running after the fleet exits (docker
# compose stops it): then check the published REST port from the host.
if [ "$(podman inspect "${P}_server_1" --format '{{.State.Running}}' 2>/dev/null)" = true ]; then
  j=$(curl -s --max-time 5 "http://127.0.0.1:$OTALAB_HTTP_PORT/v1/devices/e00f1ee70000000000000000")
  echo "$j" | grep -q '"system_firmware_version"' ||
    fail "REST on published port $OTALAB_HTTP_PORT: '$j'"
  ok "REST on published port $OTALAB_HTTP_PORT shows the device"
fi
