#!/usr/bin/env python3
"""Local stand-ins for `make demo`'s image journey (stdlib only, 127.0.0.1 only).

    demo_registries.py WORKDIR SECRETS_DIR

Starts two Debian `docker-registry` (distribution 2.8) servers:
  * a plain-HTTP *source*, seeded with a few generated images (a shared base layer, a
    two-platform index), standing in for Docker Hub;
  * the *environment's registry*: TLS with the environment's own certificate and key and
    its htpasswd from SECRETS_DIR (state/<name>/secrets/), as the registry host's
    cloud-init runs it, with a fixed http.secret.
Writes WORKDIR/ports (`SOURCE_PORT=…` / `ENV_PORT=…`) and WORKDIR/images.txt (the list, in
rancher-images.txt format), then serves until SIGTERM.
"""

import gzip
import hashlib
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.parse
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: Path, name: str, tls: tuple[Path, Path, Path] | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    storage = work / f"{name}-storage"
    storage.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: provision-demo-fixed-secret",
    ]
    if tls:
        cert, key, htpasswd = tls
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}",
                  "auth:", "  htpasswd:", "    realm: Registry", f"    path: {htpasswd}"]
    config = work / f"{name}.yml"
    config.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=open(work / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    deadline = time.time() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"docker-registry {name} did not start: see {work / (name + '.log')}")
            time.sleep(0.05)


def layer(rng: random.Random, size: int) -> bytes:
    """A gzip'd tar holding one file of random (incompressible) bytes."""
    payload = rng.randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"data-{hashlib.sha256(payload).hexdigest()[:12]}")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


class Source:
    """Uploads blobs and manifests to the plain source registry."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def blob(self, repo: str, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status != 200:
            status, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
            assert status == 202, status
            loc = urllib.parse.urlsplit(headers["location"])
            sep = "&" if loc.query else ""
            status, _, body = self.request("PUT", f"{loc.path}?{loc.query}{sep}digest={digest}", data,
                                           {"Content-Type": "application/octet-stream"})
            assert status == 201, (status, body[:200])
        return {"digest": digest, "size": len(data)}

    def manifest(self, repo: str, ref: str, doc: dict) -> dict:
        data = json.dumps(doc, separators=(",", ":")).encode()
        status, _, body = self.request("PUT", f"/v2/{repo}/manifests/{ref}", data,
                                       {"Content-Type": doc["mediaType"]})
        assert status == 201, (status, body[:300])
        return {"mediaType": doc["mediaType"], "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data)}

    def image(self, repo: str, tag: str | None, layers: list[bytes], arch: str) -> dict:
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **self.blob(repo, config)},
            "layers": [{"mediaType": OCI_LAYER, **self.blob(repo, data)} for data in layers],
        }
        desc = self.manifest(repo, tag or "sha256:" + hashlib.sha256(
            json.dumps(doc, separators=(",", ":")).encode()).hexdigest(), doc)
        return {**desc, "platform": {"os": "linux", "architecture": arch}}


def seed(port: int) -> list[str]:
    rng = random.Random(2026)
    src = Source(port)
    base = layer(rng, 2 << 20)  # shared by every image
    refs = []
    for name in ("rancher/fleet-agent", "rancher/shell"):
        src.image(name, "v0.1.0", [base, layer(rng, 1 << 20)], "amd64")
        refs.append(f"{name}:v0.1.0")
    # A two-platform index: RKE2/K3s air gaps take linux/amd64 from it.
    amd = src.image("rancher/rancher-agent", None, [base, layer(rng, 3 << 20)], "amd64")
    arm = src.image("rancher/rancher-agent", None, [layer(rng, 3 << 20)], "arm64")
    src.manifest("rancher/rancher-agent", "v2.14.0",
                 {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]})
    refs.append("rancher/rancher-agent:v2.14.0")
    return refs


def main() -> int:
    work, secrets = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for f in ("registry.crt", "registry.key", "registry-htpasswd"):
        if not (secrets / f).exists():
            raise SystemExit(f"{secrets / f} is missing: run `provision apply` first")
    procs = []

    def stop(*_):
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    source, source_port = start_registry(work, "source", None)
    procs.append(source)
    env, env_port = start_registry(
        work, "env-registry",
        (secrets / "registry.crt", secrets / "registry.key", secrets / "registry-htpasswd"))
    procs.append(env)
    refs = seed(source_port)
    (work / "images.txt").write_text(
        "# the demo's images (rancher-images.txt format)\n" + "\n".join(refs) + "\n")
    tmp = work / "ports.tmp"
    tmp.write_text(f"SOURCE_PORT={source_port}\nENV_PORT={env_port}\n")
    os.replace(tmp, work / "ports")
    deadline = time.time() + 900  # the demo's own bound
    while time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.5)
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
