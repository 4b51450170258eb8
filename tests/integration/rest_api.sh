#!/usr/bin/env bash
# Integration: otalab-server's Particle-shaped REST API with curl (PROTOCOL.md 9):
# tokens, device registry, products, SSE and WebSocket event streams, errors,
# and persistence across a restart (docs/PROTOCOL.md "REST API choices").
# usage: rest_api.sh OTALAB OTALAB_SERVER
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
HERE=$(cd "$(dirname "$0")" && pwd)
ID=00aa11bb22cc33dd44ee55ff
TOKEN=T0-fixed
. "$(dirname "$0")/lib.sh"
otl_need curl python3
otl_tmpdir rest
start_server() { otl_start_server --user alice:s3cret --max-upload 64K; }
code() { curl -s -o "$T/body" -w '%{http_code}' -H 'Expect:' "$@"; }
A=(-H "Authorization: Bearer T0-fixed")
expect() { # want-code label curl-args...
  local want=$1 label=$2; shift 2
  local got; got=$(code "$@")
  [ "$got" = "$want" ] || otl_fail "$label: HTTP $got, want $want: $(cat "$T/body")"
  otl_ok "$label -> $want"
}
body_has() { python3 -c "import json,sys; d=json.load(open('$T/body')); sys.exit(0 if ($1) else 1)" ||
  otl_fail "body check '$1': $(cat "$T/body")"; }

otl_keys_server
otl_device_keys $ID
"$OTALAB" mkapp --requires 0.6.2 --out "$T/app.bin" --product-version 3 >/dev/null ||
  otl_fail "otalab mkapp"
head -c 100000 /dev/urandom >"$T/big.bin"
start_server
otl_ok "server http=$HTTP"

# --- tokens
expect 401 "GET /v1/devices without a token" "$U/v1/devices"
body_has "d['ok'] is False and d['error']=='invalid_token'"
expect 401 "GET /v1/devices with a wrong token" -H 'Authorization: Bearer nope' "$U/v1/devices"
expect 200 "GET /v1/devices with --token" "${A[@]}" "$U/v1/devices"
expect 200 "GET /v1/devices?access_token=" "$U/v1/devices?access_token=T0-fixed"
expect 401 "oauth: wrong password" -u particle:particle \
  -d grant_type=password -d username=alice -d password=bad "$U/oauth/token"
expect 401 "oauth: wrong client" -u other:x \
  -d grant_type=password -d username=alice -d password=s3cret "$U/oauth/token"
expect 200 "oauth: password grant (particle-cli login)" -u particle:particle \
  -d grant_type=password -d username=alice -d 'password=s3cret' "$U/oauth/token"
body_has "d['token_type']=='bearer' and d['expires_in']==7776000 and len(d['access_token'])>=40 and d['refresh_token']"
expect 200 "oauth: password grant (particle-cli 3.x client CLI2)" -u CLI2:some-secret \
  -d grant_type=password -d username=alice -d 'password=s3cret' "$U/oauth/token"
TOK=$(python3 -c "import json; print(json.load(open('$T/body'))['access_token'])")
expect 200 "oauth: client_credentials grant" -u alice:s3cret \
  -d grant_type=client_credentials "$U/oauth/token"
expect 200 "GET /v1/devices with the issued token" -H "Authorization: Bearer $TOK" "$U/v1/devices"

# --- event streams in the background (raw bytes kept)
python3 - "$HTTP" /v1/events T0-fixed "$T/sse_all" <<'PY' &
import socket, sys, time
port, path, tok, out = sys.argv[1:]
s = socket.create_connection(("127.0.0.1", int(port)))
s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
with open(out, "wb") as f:
    end = time.time() + 30
    while time.time() < end:
        d = s.recv(65536)
        if not d: break
        f.write(d); f.flush()
PY
otl_track $!
curl -s -N "${A[@]}" "$U/v1/devices/$ID/events/otalab" >"$T/sse_dev" &
otl_track $!
"$OTALAB" events --server "$U" --token T0-fixed --count 1 otalab/product \
  >"$T/cli_events" 2>&1 &
CLI_EV=$!
WS=
if command -v node >/dev/null; then
  node "$HERE/ws_event.js" "$HTTP" /v1/events/ws/otalab/device T0-fixed 10000 \
    >"$T/ws.out" 2>&1 &
  WS=$!
fi
otl_wait_for 5 grep -qs ':ok' "$T/sse_all" || otl_fail "no :ok on /v1/events"
sleep 0.3

# --- device registry
python3 - "$T/$ID/$ID.pub.pem" >"$T/reg.json" <<PY
import json, sys
print(json.dumps({"id": "$ID".upper(), "public_key": open(sys.argv[1]).read(),
                  "name": "bench-1"}))
PY
expect 400 "POST /v1/devices malformed JSON" "${A[@]}" -H 'Content-Type: application/json' \
  -d '{"id": ' "$U/v1/devices"
expect 400 "POST /v1/devices malformed form" "${A[@]}" -d 'id=%zz' "$U/v1/devices"
expect 400 "POST /v1/devices bad id" "${A[@]}" -d 'id=123' --data-urlencode 'public_key@'"$T/$ID/$ID.pub.pem" "$U/v1/devices"
expect 200 "POST /v1/devices (JSON)" "${A[@]}" -H 'Content-Type: application/json' \
  --data @"$T/reg.json" "$U/v1/devices"
body_has "d['id']=='$ID' and d['name']=='bench-1' and d['product_id']==10 and d['product'] is False"
cmp -s "$T/$ID/$ID.pub.pem" "$T/data/devices/$ID.pub.pem" || otl_fail "key not stored for the DTLS check"
otl_ok "public key written to DATA/devices/$ID.pub.pem"
expect 200 "GET /v1/devices lists it" "${A[@]}" "$U/v1/devices"
body_has "[x for x in d if x['id']=='$ID' and x['name']=='bench-1']"
expect 404 "GET unknown device" "${A[@]}" "$U/v1/devices/ffffffffffffffffffffffff"
expect 200 "GET /v1/devices/:id of a developer device" "${A[@]}" "$U/v1/devices/$ID"
body_has "d['product_id']==10 and d['product'] is False and d['platform_id']==10"
otl_ok "developer device: product_id is the platform id (10), product false (as Particle)"

# --- chunked request bodies (particle-cli 3.x uploads without Content-Length)
CH=(-H 'Transfer-Encoding: chunked')
expect 400 "chunked PUT flash, whole module decoded (device offline)" "${A[@]}" "${CH[@]}" \
  -X PUT -F file=@"$T/app.bin" -F file_type=binary "$U/v1/devices/$ID"
body_has "d['errors']==['Device is not connected.']"
expect 400 "chunked PUT of a damaged module" "${A[@]}" "${CH[@]}" -X PUT \
  -F file=@"$T/$ID/$ID.pub.pem" "$U/v1/devices/$ID"
body_has "'not a module' in d['error']"
expect 413 "chunked PUT over --max-upload (no Content-Length)" "${A[@]}" "${CH[@]}" \
  -X PUT -F file=@"$T/big.bin" "$U/v1/devices/$ID"
expect 413 "chunked POST firmware over --max-upload" "${A[@]}" "${CH[@]}" \
  -F binary=@"$T/big.bin" -F version=5 "$U/v1/products/4711/firmware"
python3 - "$HTTP" "$ID" <<'PY' || otl_fail "malformed chunked framing"
import socket, sys
for req in ("PUT /v1/devices/" + sys.argv[2], "POST /v1/products"):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    s.sendall(("%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T0-fixed\r\n"
               "Content-Type: multipart/form-data; boundary=a\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\nab" % req).encode())
    s.sendall(b"cdefgh\r\n")  # longer than its size line says
    r = b""
    while True:  # headers and body may come in separate reads; the server closes
        b = s.recv(4096)
        if not b:
            break
        r += b
    r = r.decode()
    assert r.startswith("HTTP/1.1 400") and "connection: close" in r.lower(), (req, r)
    assert "chunked" in r, (req, r)
PY
otl_ok "chunked: malformed framing -> 400 and the connection closes"

# --- products
expect 200 "POST /v1/products (form, chunked)" "${A[@]}" -H 'Transfer-Encoding: chunked' \
  -d id=4711 -d name=widgets "$U/v1/products"
expect 409 "POST /v1/products again" "${A[@]}" -d id=4711 -d name=widgets "$U/v1/products"
expect 400 "POST /v1/products without name" "${A[@]}" -d id=4712 "$U/v1/products"
expect 404 "unknown product firmware" "${A[@]}" "$U/v1/products/999/firmware"
expect 404 "register into an unknown product" "${A[@]}" -d id=$ID -d product_id=999 \
  --data-urlencode 'public_key@'"$T/$ID/$ID.pub.pem" "$U/v1/devices"
expect 200 "re-register the device into product 4711 (form)" "${A[@]}" -d id=$ID \
  -d product_id=4711 -d name=bench-1 --data-urlencode 'public_key@'"$T/$ID/$ID.pub.pem" "$U/v1/devices"
expect 400 "upload a non-module" "${A[@]}" -F binary=@"$T/$ID/$ID.pub.pem" -F version=3 \
  "$U/v1/products/4711/firmware"
expect 400 "upload with the wrong version" "${A[@]}" -F binary=@"$T/app.bin" -F version=4 \
  "$U/v1/products/4711/firmware"
expect 413 "upload over --max-upload" "${A[@]}" -F binary=@"$T/big.bin" -F version=5 \
  "$U/v1/products/4711/firmware"
expect 200 "upload firmware v3" "${A[@]}" -F binary=@"$T/app.bin" -F version=3 \
  -F title=first "$U/v1/products/4711/firmware"
body_has "d['version']==3 and d['title']=='first' and d['size']==$(stat -c %s "$T/app.bin")"
expect 404 "release an unknown version" "${A[@]}" -X PUT -H 'Content-Type: application/json' \
  -d '{"version":9}' "$U/v1/products/4711/firmware/release"
expect 400 "release with malformed JSON" "${A[@]}" -X PUT -H 'Content-Type: application/json' \
  -d '{"version":' "$U/v1/products/4711/firmware/release"
expect 200 "release v3" "${A[@]}" -X PUT -H 'Content-Type: application/json' \
  -d '{"version":3}' "$U/v1/products/4711/firmware/release"
expect 200 "GET product firmware" "${A[@]}" "$U/v1/products/4711/firmware"
body_has "d[0]['version']==3 and d[0]['product_default'] is True"
expect 200 "GET product devices" "${A[@]}" "$U/v1/products/4711/devices"
body_has "[x['id'] for x in d['devices']]==['$ID']"

# --- the streams saw the events, in Particle's format
sleep 0.5
python3 - "$T/sse_all" "$ID" <<'PY' || otl_fail "SSE stream format"
import json, sys, re
raw = open(sys.argv[1], "rb").read().decode()
head, _, body = raw.partition("\r\n\r\n")
assert head.startswith("HTTP/1.1 200"), head
assert "text/event-stream" in head.lower(), head
assert "transfer-encoding" not in head.lower(), "chunked SSE"
assert body.startswith(":ok\n"), repr(body[:20])
recs = [r for r in body.split("\n\n") if r.startswith("event: ")]
names = []
for r in recs:
    lines = r.split("\n")
    assert len(lines) == 2 and lines[1].startswith("data: "), r
    d = json.loads(lines[1][6:])
    assert set(d) == {"data", "ttl", "published_at", "coreid"}, d
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", d["published_at"])
    names.append((lines[0][7:], d["coreid"]))
assert ("otalab/device/registered", sys.argv[2]) in names, names
assert ("otalab/product/firmware/released", "particle-internal") in names, names
print("sse: %d records" % len(recs))
PY
otl_ok "SSE /v1/events: :ok, event/data records, registration and release seen"
grep -q "^event: otalab/device/registered" "$T/sse_dev" || otl_fail "device stream missed the registration"
! grep -q "otalab/product" "$T/sse_dev" || otl_fail "device stream got a product event"
otl_ok "SSE /v1/devices/:id/events/otalab filtered by device and prefix"
otl_wait_for 5 grep -q 'otalab/product/firmware' "$T/cli_events" || otl_fail "otalab events: $(cat "$T/cli_events")"
wait "$CLI_EV" || otl_fail "otalab events --count 1 exit code"
otl_ok "otalab events --count 1: $(cut -c1-60 "$T/cli_events")"
if [ -n "$WS" ]; then
  wait "$WS" || otl_fail "websocket: $(cat "$T/ws.out")"
  python3 -c "import json,sys; l=open('$T/ws.out').read().split('\n'); d=json.loads(l[1]); assert d['name'].startswith('otalab/device') and d['coreid']=='$ID', d" ||
    otl_fail "websocket message: $(cat "$T/ws.out")"
  otl_ok "WebSocket /v1/events/ws: one JSON message per event"
else
  echo "note: node missing, WebSocket check skipped"
fi
expect 401 "event stream without a token" "$U/v1/events"

# --- restart: everything persisted
otl_stop_server
start_server
expect 200 "after restart: issued token still valid" -H "Authorization: Bearer $TOK" "$U/v1/devices"
body_has "[x for x in d if x['id']=='$ID' and x['product_id']==4711]"
expect 200 "after restart: firmware and release kept" "${A[@]}" "$U/v1/products/4711/firmware"
body_has "d[0]['version']==3 and d[0]['product_default'] is True"
cmp -s "$T/app.bin" "$T/data/firmware/4711/3.bin" || otl_fail "firmware file"
otl_ok "after restart: DATA/firmware/4711/3.bin intact"

# --- a corrupt store file is reported, moved aside, never fatal
otl_stop_server
printf '{"4711": {broken' >"$T/data/products.json"
start_server
grep -q 'products.json is corrupt' "$T/server.log" || otl_fail "corruption not reported"
[ -f "$T/data/products.json.corrupt" ] || otl_fail "corrupt file not kept aside"
expect 200 "corrupt products.json: server up, other data kept" "${A[@]}" "$U/v1/devices"
body_has "[x for x in d if x['id']=='$ID']"
otl_pass rest_api
