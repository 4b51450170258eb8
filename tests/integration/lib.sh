# shellcheck shell=bash
# Shared helpers for the integration scripts in tests/integration (sourced, not run):
# temp dir and cleanup, fail/ok, waiting, keys, otalab-server/otalab-device, REST polling.
#
# Use:
#   set -u
#   OTALAB=${1:?otalab binary}; SERVER=${2:?..}; DEVICE=${3:?..}; FIX=${4:?..}
#   . "$(dirname "$0")/lib.sh"
#   otl_tmpdir NAME                  # T=/tmp/otalab-NAME.XXXXXX, cleanup trap
#   otl_keys_server; otl_device_keys $ID; otl_register_file $ID
#   otl_start_server [ARGS...]       # COAP HTTP U SPID; --no-auth, or --token $TOKEN
#   otl_start_device $ID --log dev1 --release 0.6.1 [ARGS...]   # DEVPID
#   otl_wait_for 20 otl_dev_has $ID "d['connected']" || otl_fail "not connected"
#   otl_pass NAME                    # stop all, no sanitizer report, "PASS NAME"
#
# Variables the scripts set: OTALAB SERVER DEVICE (binaries), FIX (fixtures dir:
# passed to devices as --fixtures when set), TOKEN (set before otl_start_server:
# the server runs with --token $TOKEN and otl_curl/otl_dev_json send it; unset:
# --no-auth), KEEP=1 in the environment keeps $T. OTL_SHOW+=(FILE) adds a file to
# what is printed on failure. Variables the lib sets: T, COAP, HTTP, U, SPID,
# DEVPID, AUTH ("Authorization: Bearer $TOKEN" or empty), OTL_AUTH_H (curl args).
# A process started by hand (relay, tshark, a fleet): `cmd & otl_track $!`, and
# OTL_LOGS+=(FILE) for a server/device log to be checked and shown like the rest.
# otl_fail exits the shell it runs in: inside $(...) or a pipe, only that subshell.
#
# Files under $T: keys/ (server), ID/ID.{key,crt,pub}.pem (device), data/ (server
# --data; data/devices/ID.pub.pem when registered by file), server.out (the
# `listening` line, rewritten per start), server.log (stderr, appended across
# restarts), LOG.out/LOG.log (a device's stdout/stderr), ID.state (device state).
#
# On exit (trap): tracked processes get SIGTERM (the last started first; SIGKILL
# after 10 s), otl_at_exit hooks run, every server/device log is searched for
# sanitizer reports (a report turns a pass into a failure), on failure the logs'
# tails are printed, then $T is removed unless KEEP is set.

OTL_PIDS=()    # processes to stop at the end, in start order
OTL_LOGS=()    # server/device logs: tails on failure, sanitizer check at the end
OTL_SHOW=()    # extra files to print on failure (relay, tshark, ...)
OTL_AT_EXIT=() # commands (one word each) run at exit after the processes stop
OTL_AUTH_H=()  # curl arguments carrying the token (empty with --no-auth)
AUTH=
SPID=
DEVPID=
OTL_SANITIZER_RE='Sanitizer|runtime error'
OTL_SAN_SHOWN=  # set once a report has been printed

# otl_tmpdir NAME: make $T (/tmp/otalab-NAME.XXXXXX) and install the cleanup trap.
otl_tmpdir() {
  T=$(mktemp -d "/tmp/otalab-${1:-test}.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
  trap otl__cleanup EXIT
}

# otl_fail MSG: print "FAIL: MSG" and exit 1 (the trap prints the logs).
otl_fail() { echo "FAIL: $*"; FAILED=1; exit 1; }
# otl_ok MSG: print "ok: MSG".
otl_ok() { echo "ok: $*"; }
# otl_skip MSG: print "SKIP: MSG" and exit 77 (CTest SKIP_RETURN_CODE).
otl_skip() { echo "SKIP: $*"; exit 77; }
# otl_need CMD...: skip unless every command is on PATH.
otl_need() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null || otl_skip "$c missing"; done
}

# otl_wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds; 1 on timeout.
otl_wait_for() {
  local n=$(($1 * 10)) i
  shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

# otl_at_exit FUNC: run FUNC at exit, after the tracked processes are stopped
# and before the logs are printed and $T is removed.
otl_at_exit() { OTL_AT_EXIT+=("$1"); }

# otl_track PID...: stop PID at the end like the processes started here.
otl_track() { OTL_PIDS+=("$@"); }

# otl_kill PID...: SIGTERM, wait for the exit (SIGKILL after 10 s); untracks PID.
otl_kill() {
  local p i q keep
  for p in "$@"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      echo "note: pid $p still running 10 s after SIGTERM: SIGKILL"
      kill -9 "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    keep=()
    for q in "${OTL_PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    OTL_PIDS=("${keep[@]}")
  done
  return 0
}

# otl_stop_all: stop every tracked process that is still a job of this shell,
# the last started first (devices before the server they talk to).
otl_stop_all() {
  local jobs_now i p
  jobs_now=" $(jobs -p | tr '\n' ' ') "
  for ((i = ${#OTL_PIDS[@]} - 1; i >= 0; i--)); do
    p=${OTL_PIDS[i]}
    case "$jobs_now" in *" $p "*) otl_kill "$p" ;; esac
  done
  OTL_PIDS=()
  SPID=
}

# otl_sanitizer_reports: print the sanitizer reports found in the server/device
# logs; 0 when there is one, 1 when the logs are clean.
otl_sanitizer_reports() {
  local f found=1
  for f in "${OTL_LOGS[@]}"; do
    [ -f "$f" ] && grep -qE "$OTL_SANITIZER_RE" "$f" || continue
    found=0
    [ -n "$OTL_SAN_SHOWN" ] && continue
    echo "--- sanitizer report in $f"
    grep -E -A 12 "$OTL_SANITIZER_RE" "$f" | head -n 60
  done
  [ $found = 0 ] && OTL_SAN_SHOWN=1
  return $found
}

# otl_pass [NAME]: stop everything, fail on a sanitizer report, print "PASS NAME".
otl_pass() {
  otl_stop_all
  otl_sanitizer_reports && otl_fail "sanitizer report"
  echo "PASS${1:+ $1}"
}

otl__cleanup() {
  local rc=$? f
  trap - EXIT
  otl_stop_all
  for f in "${OTL_AT_EXIT[@]}"; do "$f"; done
  if otl_sanitizer_reports && { [ "$rc" = 0 ] || [ "$rc" = 77 ]; }; then
    echo "FAIL: sanitizer report"
    rc=1
  fi
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    for f in "${OTL_LOGS[@]}"; do
      [ -f "$f" ] || continue
      case "$f" in
      */server.log) echo "--- $f (tail)"; tail -n 60 "$f" ;;
      *) echo "--- $f (tail)"; tail -n 40 "$f" ;;
      esac
    done
    for f in "${OTL_SHOW[@]}"; do
      [ -f "$f" ] && { echo "--- $f"; tail -n 60 "$f"; }
    done
  fi
  if [ -n "${KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
  exit "$rc"
}

# otl_keys_server: server key pair and certificate in $T/keys (otalab keys server).
otl_keys_server() {
  "$OTALAB" keys server --out "$T/keys" >/dev/null || otl_fail "otalab keys server"
}

# otl_device_keys ID...: a device key pair and certificate in $T/ID (otalab keys device).
otl_device_keys() {
  local id
  for id in "$@"; do
    "$OTALAB" keys device --id "$id" --out "$T/$id" >/dev/null ||
      otl_fail "otalab keys device $id"
  done
}

# otl_register_file ID...: register by file (DATA/devices/ID.pub.pem), before or
# while the server runs.
otl_register_file() {
  local id
  mkdir -p "$T/data/devices"
  for id in "$@"; do
    cp "$T/$id/$id.pub.pem" "$T/data/devices/" || otl_fail "register $id by file"
  done
}

# otl_register_rest ID [CURL ARGS...]: POST /v1/devices with the device's public
# key (and e.g. -d product_id=N -d name=X); fails the test on an HTTP error.
otl_register_rest() {
  local id=$1
  shift
  otl_curl -f -d id="$id" --data-urlencode "public_key@$T/$id/$id.pub.pem" "$@" \
    "$U/v1/devices" >/dev/null || otl_fail "POST /v1/devices $id"
}

# otl_start_server [ARGS...]: start $SERVER on ephemeral ports (or OTL_COAP_PORT /
# OTL_HTTP_PORT) with $T/keys and $T/data, -v, auth as TOKEN says, then ARGS;
# waits for `listening coap=N http=M` and sets COAP, HTTP, U, SPID.
otl_start_server() {
  local auth=(--no-auth)
  if [ -n "${TOKEN:-}" ]; then
    export TOKEN
    auth=(--token "$TOKEN")
    AUTH="Authorization: Bearer $TOKEN"
    OTL_AUTH_H=(-H "$AUTH")
  fi
  mkdir -p "$T/data"
  : >"$T/server.out"
  "$SERVER" --coap-port "${OTL_COAP_PORT:-0}" --http-port "${OTL_HTTP_PORT:-0}" \
    --keys "$T/keys" --data "$T/data" "${auth[@]}" -v "$@" \
    >"$T/server.out" 2>>"$T/server.log" &
  SPID=$!
  OTL_PIDS+=("$SPID")
  case " ${OTL_LOGS[*]} " in *" $T/server.log "*) ;; *) OTL_LOGS+=("$T/server.log") ;; esac
  otl_wait_for 10 otl__listening || otl_fail "server did not start"
  COAP=$(sed -n 's/^listening coap=\([0-9]*\) http=.*/\1/p' "$T/server.out")
  HTTP=$(sed -n 's/^listening coap=[0-9]* http=\([0-9]*\).*/\1/p' "$T/server.out")
  U=http://127.0.0.1:$HTTP
}
otl__listening() {
  grep -q '^listening ' "$T/server.out" && return 0
  kill -0 "$SPID" 2>/dev/null || otl_fail "server did not start (exited)"
  return 1
}

# otl_stop_server: SIGTERM the server and wait for a clean exit (for a restart).
otl_stop_server() {
  otl_kill "$SPID"
  SPID=
}

# otl_start_device ID [--log NAME] [--keys DIR] [ARGS...]: start $DEVICE as ID
# with the keys in DIR (default $T/ID), stdout/stderr in $T/NAME.out/.log (NAME
# defaults to ID), -v. Unless ARGS name them: --server 127.0.0.1:$COAP,
# --state $T/ID.state, --fixtures $FIX (when FIX is set). Sets DEVPID.
otl_start_device() {
  local id=$1 log=$1 dir=$T/$1 a
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
    --log) log=$2; shift 2 ;;
    --keys) dir=$2; shift 2 ;;
    *) break ;;
    esac
  done
  local extra=()
  case " $* " in *" --server "*) ;; *) extra+=(--server "127.0.0.1:$COAP") ;; esac
  case " $* " in *" --state "*) ;; *) extra+=(--state "$T/$id.state") ;; esac
  if [ -n "${FIX:-}" ]; then
    case " $* " in *" --fixtures "*) ;; *) extra+=(--fixtures "$FIX") ;; esac
  fi
  for a in "$dir/$id.key.pem" "$dir/$id.crt.pem"; do
    [ -f "$a" ] || otl_fail "no $a (otl_device_keys $id)"
  done
  "$DEVICE" --id "$id" --key "$dir/$id.key.pem" --cert "$dir/$id.crt.pem" \
    --server-cert "$T/keys/server.crt.pem" "${extra[@]}" "$@" -v \
    >"$T/$log.out" 2>"$T/$log.log" &
  DEVPID=$!
  OTL_PIDS+=("$DEVPID")
  OTL_LOGS+=("$T/$log.log")
}

# otl_curl ARGS...: curl -s with the token header (when TOKEN is set).
otl_curl() { curl -s "${OTL_AUTH_H[@]}" "$@"; }

# otl_dev_json ID: GET /v1/devices/ID (body on stdout; 2 s limit).
otl_dev_json() { otl_curl --max-time 2 "$U/v1/devices/$1"; }

# otl_dev_py ID EXPR: print the Python expression EXPR over the device JSON `d`;
# non-zero when the GET or the expression fails.
otl_dev_py() {
  otl_dev_json "$1" | python3 -c "import json,sys; d=json.load(sys.stdin); print($2)" 2>/dev/null
}

# otl_dev_has ID EXPR: 0 when the Python expression EXPR over `d` is true.
otl_dev_has() {
  otl_dev_json "$1" |
    python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($2) else 1)" 2>/dev/null
}

# otl_has_module ID F/N V [EXPR]: 0 when ID is connected and its describe lists
# module F/N at version V (and the Python EXPR over the module `m`, if given).
otl_has_module() {
  otl_dev_has "$1" "d.get('connected') and any(str(m.get('f'))+'/'+str(m.get('n'))=='$2' and m.get('v')==$3 and (${4:-True}) for m in (d.get('describe') or {}).get('m',[]))"
}

# otl_flash_rest ID FILE...: PUT /v1/devices/ID with the files as multipart
# `file` parts (body on stdout).
otl_flash_rest() {
  local id=$1 f args=()
  shift
  for f in "$@"; do args+=(-F "file=@$f"); done
  otl_curl --max-time 10 -H 'Expect:' -X PUT "${args[@]}" "$U/v1/devices/$id"
}
