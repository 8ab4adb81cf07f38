#!/usr/bin/env python3
"""A recording, fault-injecting HTTP proxy in front of a moto server (stdlib only).

Usage: proxy.py UPSTREAM_PORT. Binds 127.0.0.1 on a free port and prints that port on the
first line of stdout. Every request is forwarded unchanged to 127.0.0.1:UPSTREAM_PORT,
except the control endpoints:

  POST /__proxy/config  JSON {fault_rate, seed, hold_after_mutations, delay_ms}
                        (fields given replace the current ones; the mutation counter and
                        the random generator restart)
  GET  /__proxy/stats   JSON {calls: [{service, action, mutating, faulted}], held}
  POST /__proxy/reset   forget the calls, release a held response, default config

Faults are decided BEFORE forwarding, so a faulted call never reaches the emulator.
`hold_after_mutations = N` forwards the N-th mutating call, then never answers it and
reports held = true: the caller can be killed right after the cloud accepted the call.
"""

import http.client
import json
import random
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MUTATING_PREFIXES = (
    "Create", "Delete", "Modify", "Run", "Terminate", "Authorize", "Revoke", "Associate",
    "Disassociate", "Attach", "Detach", "Register", "Deregister", "Change", "Import", "Put",
    "Set", "Add", "Remove", "Replace", "Update", "Start", "Stop", "Reboot", "Enable",
    "Disable", "Allocate", "Release", "Restore", "Copy", "Tag", "Untag", "Rotate",
)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "content-length",
}
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
ROUTE53_LIST_TAGS = re.compile(r"^/2013-04-01/tags/[^/]+/?$")

LOCK = threading.Lock()
STATE = {}


def default_state():
    return {
        "fault_rate": 0.0,
        "seed": 0,
        "hold_after_mutations": None,
        "delay_ms": 0,
        "rng": random.Random(0),
        "mutations": 0,
        "calls": [],
        "held": False,
        "release": threading.Event(),
    }


STATE.update(default_state())


def classify(method, path, headers, body):
    """(service, action, mutating, protocol) of one AWS request."""
    auth = headers.get("Authorization", "")
    match = CREDENTIAL_SCOPE.search(auth)
    service = match.group(1) if match else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        action = target.rsplit(".", 1)[-1]
        return service, action, action.startswith(MUTATING_PREFIXES), "json"
    if service == "route53" or path.startswith("/2013-04-01/"):
        bare = urllib.parse.urlsplit(path).path
        action = f"{method} {bare}"
        mutating = method in ("POST", "DELETE") and not (
            method == "POST" and ROUTE53_LIST_TAGS.match(bare)
        )
        return "route53", action, mutating, "route53"
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    action = (form.get("Action") or query.get("Action") or ["unknown"])[0]
    protocol = "ec2" if service == "ec2" else "query"
    return service, action, action.startswith(MUTATING_PREFIXES), protocol


def fault_response(protocol):
    """(status, content type, body) of a throttling error in the protocol's dialect."""
    if protocol == "json":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
        return 400, "application/x-amz-json-1.1", body
    if protocol == "ec2":
        body = (
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
            "<Message>Request limit exceeded.</Message></Error></Errors>"
            "<RequestID>x</RequestID></Response>"
        )
        return 503, "text/xml", body
    if protocol == "route53":
        body = (
            '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
            "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded"
            "</Message></Error><RequestId>x</RequestId></ErrorResponse>"
        )
        return 400, "text/xml", body
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
        "<Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>"
    )
    return 503, "text/xml", body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, content_type, body, extra_headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in extra_headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def control(self, body):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/__proxy/stats":
            with LOCK:
                doc = {"calls": list(STATE["calls"]), "held": STATE["held"]}
            return self.reply(200, "application/json", json.dumps(doc))
        if path == "/__proxy/reset":
            with LOCK:
                STATE["release"].set()
                STATE.update(default_state())
            return self.reply(200, "application/json", "{}")
        if path == "/__proxy/config":
            wanted = json.loads(body or b"{}")
            with LOCK:
                for key in ("fault_rate", "seed", "hold_after_mutations", "delay_ms"):
                    if key in wanted:
                        STATE[key] = wanted[key]
                STATE["rng"] = random.Random(STATE["seed"])
                STATE["mutations"] = 0
                STATE["held"] = False
            return self.reply(200, "application/json", "{}")
        return self.reply(404, "text/plain", "unknown control path")

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/__proxy/"):
            return self.control(body)
        service, action, mutating, protocol = classify(
            self.command, self.path, self.headers, body
        )
        with LOCK:
            delay = STATE["delay_ms"]
            fault = STATE["fault_rate"] > 0 and STATE["rng"].random() < STATE["fault_rate"]
            hold = False
            if mutating and not fault:
                STATE["mutations"] += 1
                hold = STATE["hold_after_mutations"] == STATE["mutations"]
            release = STATE["release"]
            STATE["calls"].append(
                {"service": service, "action": action, "mutating": mutating, "faulted": fault}
            )
        if delay:
            time.sleep(delay / 1000.0)
        if fault:
            status, content_type, text = fault_response(protocol)
            return self.reply(status, content_type, text)

        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
            out_headers = [
                (k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP
            ]
        except Exception as error:  # the emulator went away: tell the client
            return self.reply(502, "text/plain", f"proxy: upstream failed: {error}")
        finally:
            conn.close()

        if hold:
            with LOCK:
                STATE["held"] = True
            release.wait()
            self.close_connection = True
            return None
        return self.reply(status, None, data, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    Handler.upstream_port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
