#!/usr/bin/env python3
"""A fault-injecting proxy on 127.0.0.1 for the images tests (stdlib only).

http mode (in front of a plain-HTTP registry): forwards each request and, following the
plan given on the command line, answers 429 with Retry-After, answers 503, or sends a
blob's headers and half its body and then drops the connection. Every fault that fires is
counted in the JSON file given with --report, which the test reads to assert that it fired.

tcp mode: a plain TCP relay (TLS passes through untouched) throttled to --rate bytes/s,
to make a transfer slow enough to be killed in the middle.

Usage: fault_proxy.py PORTFILE UPSTREAM_PORT [--tcp] [--rate N] [--report FILE]
                      [--429 N] [--503 N] [--drop N]
"""
import http.client
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingTCPServer, BaseRequestHandler

args = sys.argv[1:]
portfile, upstream = args[0], int(args[1])
opts = {"--tcp": False, "--rate": 0, "--report": None, "--429": 0, "--503": 0, "--drop": 0}
i = 2
while i < len(args):
    a = args[i]
    if a == "--tcp":
        opts[a] = True
        i += 1
    else:
        opts[a] = args[i + 1]
        i += 2
rate = int(opts["--rate"])
plan = {"429": int(opts["--429"]), "503": int(opts["--503"]), "drop": int(opts["--drop"])}
fired = {"429": 0, "503": 0, "drop": 0, "requests": 0, "range": 0}
lock = threading.Lock()


def report():
    if opts["--report"]:
        with open(opts["--report"] + ".tmp", "w") as f:
            json.dump(fired, f)
        import os
        os.replace(opts["--report"] + ".tmp", opts["--report"])


def take(kind):
    with lock:
        if fired[kind] < plan[kind]:
            fired[kind] += 1
            report()
            return True
    return False


def throttled_send(sock_send, data):
    if rate <= 0:
        sock_send(data)
        return
    step = 16384
    for k in range(0, len(data), step):
        sock_send(data[k:k + step])
        time.sleep(len(data[k:k + step]) / rate)


class Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def relay(self):
        with lock:
            fired["requests"] += 1
            if self.headers.get("Range"):
                fired["range"] += 1
            report()
        is_blob = "/blobs/sha256:" in self.path and self.command == "GET"
        if is_blob and take("429"):
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "/manifests/" in self.path and take("503"):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        headers["Host"] = "127.0.0.1:%d" % upstream
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read() if self.command != "HEAD" else b""
        drop = is_blob and resp.status in (200, 206) and len(data) > 1024 and take("drop")
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            self.send_header(k, v)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if drop:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if data:
            throttled_send(self.wfile.write, data)
        conn.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = relay


class Tcp(BaseRequestHandler):
    def handle(self):
        up = socket.create_connection(("127.0.0.1", upstream))

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    throttled_send(b.sendall, d)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(up, self.request), daemon=True)
        t.start()
        pump(self.request, up)
        t.join()


# A client that goes away mid-answer (a killed provision) is expected here: no traceback.
ThreadingTCPServer.handle_error = lambda self, request, address: None
ThreadingHTTPServer.handle_error = lambda self, request, address: None
ThreadingTCPServer.allow_reuse_address = True
ThreadingTCPServer.daemon_threads = True
ThreadingHTTPServer.daemon_threads = True
server = (ThreadingTCPServer if opts["--tcp"] else ThreadingHTTPServer)(
    ("127.0.0.1", 0), Tcp if opts["--tcp"] else Http
)
report()
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.replace(portfile + ".tmp", portfile)
server.serve_forever()
