#!/usr/bin/env python3
"""Hostile clients for bench/serve_soak.sh: N slowloris connections that trickle header
bytes (one every 0.5 s, reconnecting when the server drops them) and, on another thread,
malformed framing on fresh connections every 0.1 s (bad or conflicting Content-Length, an
unsupported Transfer-Encoding, garbage, oversized headers, wrong methods, half-sent bodies).

    slow_clients.py PORT N SECONDS      -> one JSON line of counts on stdout
"""
import json
import socket
import sys
import threading
import time

port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.time() + seconds
counts = {"slow_clients": n, "slow_dropped_by_server": 0, "malformed_sent": 0, "malformed_status": {}}
lock = threading.Lock()

MALFORMED = [
    b"POST /v1/classify HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/classify HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n{}{}}",
    b"POST /v1/classify HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n",
    b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    b"PUT /health HTTP/1.1\r\n\r\n",
    b"POST /v1/classify HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n",
    b"POST /v1/classify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/classify HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"texts\": [",  # then hangs up
]


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: slow\r\n")
    return s


def slowloris():
    socks = [connect() for _ in range(n)]
    while time.time() < end:
        for i, s in enumerate(socks):
            try:
                s.send(b"X")
                try:  # an answer (408) or a close: the server dropped us; come back
                    if s.recv(4096) is not None:
                        raise ConnectionError
                except BlockingIOError:
                    pass
            except (OSError, ConnectionError):
                s.close()
                with lock:
                    counts["slow_dropped_by_server"] += 1
                socks[i] = connect()
        time.sleep(0.5)
    for s in socks:
        s.close()


def malformed():
    k = 0
    while time.time() < end:
        req = MALFORMED[k % len(MALFORMED)]
        k += 1
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            if k % len(MALFORMED) == 0:
                s.close()  # the half-sent body: hang up without reading
                status = "hangup"
            else:
                answer = s.recv(64)
                s.close()
                status = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "none"
        except OSError as e:
            status = type(e).__name__
        with lock:
            counts["malformed_sent"] += 1
            counts["malformed_status"][status] = counts["malformed_status"].get(status, 0) + 1
        time.sleep(0.1)


threads = [threading.Thread(target=slowloris), threading.Thread(target=malformed)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts, sort_keys=True))
