#!/usr/bin/env python3
"""Per-chunk instruction table from a callgrind dump of otalab-server or
otalab-device (profile_ota.sh runs it): inclusive costs of the OTA hot-path
functions, and of caller->callee edges, divided by the chunk count.
usage: profile_ota.py server|device CALLGRIND_FILE CHUNKS"""
import re
import subprocess
import sys

who, path, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes",
                      "--tree=calling", "--threshold=100", path],
                     capture_output=True, text=True).stdout
incl, edge, total = {}, {}, 0
cur = None
row = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(\*|>)\s+\S*?:([^\s\[]+)(?: \(([\d,]+)x\))?")
for line in out.splitlines():
    if "PROGRAM TOTALS" in line:
        total = int(line.split()[0].replace(",", ""))
    m = row.match(line)
    if not m:
        continue
    cost = int(m.group(1).replace(",", ""))
    fn = m.group(3).split("'")[0]
    if m.group(2) == "*":
        cur = fn
        incl[fn] = incl.get(fn, 0) + cost
    elif cur:
        c = edge.setdefault((cur, fn), [0, 0])
        c[0] += cost
        c[1] += int((m.group(4) or "0").replace(",", ""))


def f(name):
    return incl.get(name, 0)


def e(a, b):
    return edge.get((a, b), [0, 0])[0]


if who == "server":
    rows = [
        ("CRC-32 of each chunk", e("send_chunk", "ota_crc32")),
        ("CoAP encode (ota_coap_encode)", e("send_chunk", "ota_coap_encode")),
        ("ota_tx other (send_chunk, window, outbox)",
         f("send_window") - e("send_chunk", "ota_crc32") - e("send_chunk", "ota_coap_encode")),
        ("outbox decode + classify (drain)", e("drain", "ota_outbox_msg") + e("drain", "ota_msg_classify")),
        ("libcoap PDU build (srv_coap_send_mid)", f("srv_coap_send_mid") - f("coap_send")),
        ("libcoap coap_send minus DTLS", f("coap_send") - f("SSL_write")),
        ("DTLS encrypt (OpenSSL SSL_write)", f("SSL_write")),
        ("logging (ota_logf)", f("ota_logf")),
    ]
    hot = f("srv_ota_timers") + f("srv_ota_on_coap")
    rows.append(("= OTA send path (srv_ota_timers+srv_ota_on_coap)", hot))
    rest = total - f("cb_http") - f("hnd_hello") - f("SSL_do_handshake") - f("coap_session_disconnected")
    rows.append(("process total minus REST, Hello, handshakes", rest))
else:
    rx = f("ota_rx_on_message") - f("on_done")
    rows = [
        ("DTLS decrypt (mbedtls_ssl_read)", e("t_recv", "mbedtls_ssl_read")),
        ("CRC-32 of each chunk", e("ota_rx_on_message", "ota_crc32")),
        ("ota_rx other (parse, store)", rx - e("ota_rx_on_message", "ota_crc32")),
        ("CoAP summary for logging", e("on_deliver", "ota_coap_summary")),
        ("CoAP decode + chan (ota_coap_chan_on_datagram)", e("deliver_down", "ota_coap_chan_on_datagram")),
        ("link model (ota_link_submit)", e("sim_dev_on_readable", "ota_link_submit")),
        ("logging (ota_logf)", f("ota_logf")),
        ("on_deliver other", f("on_deliver") - f("ota_rx_on_message") - e("on_deliver", "sim_state_save")
         - e("on_deliver", "ota_coap_summary") - e("on_deliver", "ota_logf")),
    ]
    hot = (f("deliver_down") - e("deliver_down", "t_step") - e("deliver_down", "handshake_result")
           - f("on_done") - e("on_deliver", "sim_state_save"))
    rows.append(("= datagram path (deliver_down minus UpdateDone, saves, handshake)", hot))
    per_part = [("UpdateDone check (on_done)", f("on_done")),
                ("state saves (sim_state_save)", f("sim_state_save")),
                ("boot checks (ota_device_boot)", f("ota_device_boot"))]
    rest = total - f("t_step") - f("ota_device_boot") - f("sim_dtls_new")
    rows.append(("process total minus handshakes, boots", rest))
for name, v in rows:
    print(f"  {who:6} {name:66} {v / chunks:9.0f} Ir/chunk")
if who == "device":
    for name, v in per_part:
        print(f"  {who:6} {name:66} {v / 3:9.0f} Ir/part")
