#!/usr/bin/env bash
# Integration: bad input on the CoAP/DTLS port never crashes otalab-server: random
# datagrams, a truncated DTLS record, a real DTLS peer (openssl s_client with a
# registered device certificate) sending non-CoAP bytes and a malformed Hello.
# Afterwards a real device is still admitted and described.
# usage: bad_input.sh OTALAB OTALAB_SERVER OTALAB_DEVICE FIXTURES_DIR
set -u
OTALAB=${1:?otalab binary}
SERVER=${2:?otalab-server binary}
DEVICE=${3:?otalab-device binary}
FIX=${4:?fixtures dir}
ID=00aa11bb22cc33dd44ee5503
. "$(dirname "$0")/lib.sh"
otl_need python3
otl_tmpdir bad

otl_keys_server
otl_device_keys $ID
otl_register_file $ID
otl_start_server
alive() { kill -0 $SPID 2>/dev/null || otl_fail "server died: $*"; }

python3 - "$COAP" <<'PY' || otl_fail "sending random datagrams"
import os, random, socket, sys
port = int(sys.argv[1]); rnd = random.Random(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(500):  # random bytes, 1..1400 long, some shaped like DTLS headers
    b = bytearray(os.urandom(rnd.randint(1, 1400)))
    if i % 3 == 0 and len(b) > 13: b[0] = rnd.choice([20, 21, 22, 23]); b[1:3] = b'\xfe\xfd'
    s.sendto(bytes(b), ('127.0.0.1', port))
# a ClientHello record header that promises more bytes than it carries
s.sendto(bytes([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00]) + b'\x01' * 10, ('127.0.0.1', port))
PY
sleep 0.3; alive "after random datagrams"
otl_ok "500 random datagrams and a truncated DTLS record: server alive"

if command -v openssl >/dev/null; then
  # non-CoAP bytes, then a CON POST h with a 1-byte payload (malformed Hello)
  (printf 'GARBAGE\n'; sleep 0.3; printf '\x40\x02\x00\x01\xb1h\xff\x01'; sleep 0.7) |
    timeout 5 openssl s_client -dtls1_2 -cipher ECDHE-ECDSA-AES128-CCM8 \
      -connect 127.0.0.1:$COAP -cert "$T/$ID/$ID.crt.pem" -key "$T/$ID/$ID.key.pem" \
      -quiet >"$T/sclient.out" 2>&1
  alive "after a DTLS peer sent malformed CoAP"
  grep -q 'handshake complete' "$T/server.log" || otl_fail "openssl s_client did not complete DTLS"
  otl_wait_for 5 grep -qi 'malformed Hello' "$T/server.log" || otl_fail "no log line for the malformed Hello"
  otl_ok "DTLS peer with malformed CoAP and a 1-byte Hello: refused with a log line, server alive"
fi

otl_start_device $ID --log dev --release 0.6.1
described() { otl_dev_json $ID | grep -q '"system_firmware_version": *"0.6.1"'; }
otl_wait_for 20 described || otl_fail "a real device was not admitted and described afterwards"
alive "at the end"
otl_ok "a real device is still admitted and described as 0.6.1"
otl_pass
