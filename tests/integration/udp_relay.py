#!/usr/bin/env python3
"""UDP relay between otalab-device and otalab-server for the OTA tests: counts
datagrams and bytes each way, and on request flips one byte of one large
server->device datagram (a firmware chunk: DTLS then drops the record, which
exercises the OTA loss path, PROTOCOL.md 2.5 ChunkMissed / retransmission).

usage: udp_relay.py SERVER_PORT STATE_DIR
  prints "relay PORT" on stdout when ready; every second (and on exit) writes
  STATE_DIR/relay.stats: "down_dgrams down_bytes up_dgrams up_bytes flipped".
  Creating STATE_DIR/flip arms the corruption: the FLIP_NTH-th (env, default
  3) server->device datagram of >= 500 bytes after arming gets one byte
  flipped, once. Exits on SIGTERM or after 600 s.
"""
import os
import select
import signal
import socket
import sys
import time

server_port = int(sys.argv[1])
state = sys.argv[2]
nth = int(os.environ.get("FLIP_NTH", "3"))
server = ("127.0.0.1", server_port)

front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", 0))
print("relay %d" % front.getsockname()[1], flush=True)

backs = {}  # device address -> socket towards the server
owner = {}  # back socket fd -> device address
stats = [0, 0, 0, 0, 0]  # down dgrams/bytes, up dgrams/bytes, flipped
armed_seen = 0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)


def write_stats():
    tmp = os.path.join(state, "relay.stats.tmp")
    with open(tmp, "w") as f:
        f.write(" ".join(str(x) for x in stats) + "\n")
    os.replace(tmp, os.path.join(state, "relay.stats"))


end = time.time() + 600
last = 0.0
while running and time.time() < end:
    socks = [front] + list(backs.values())
    try:
        ready, _, _ = select.select(socks, [], [], 0.2)
    except InterruptedError:
        continue
    for s in ready:
        if s is front:
            data, addr = front.recvfrom(65536)
            b = backs.get(addr)
            if b is None:
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                b.bind(("127.0.0.1", 0))
                backs[addr] = b
                owner[b.fileno()] = addr
            stats[2] += 1
            stats[3] += len(data)
            b.sendto(data, server)
        else:
            data, _ = s.recvfrom(65536)
            addr = owner[s.fileno()]
            stats[0] += 1
            stats[1] += len(data)
            if (not stats[4] and len(data) >= 500
                    and os.path.exists(os.path.join(state, "flip"))):
                armed_seen += 1
                if armed_seen == nth:
                    buf = bytearray(data)
                    buf[len(buf) // 2] ^= 0x5A
                    data = bytes(buf)
                    stats[4] = 1
                    print("flipped one byte of a %d-byte datagram" % len(data),
                          flush=True)
            front.sendto(data, addr)
    if time.time() - last >= 1.0:
        write_stats()
        last = time.time()
write_stats()
