#!/usr/bin/env python3
"""`make bench-images`: filling a registry, provision against skopeo, under a model of a far source.

Everything listens on 127.0.0.1 only and stops by itself (every command has a timeout, the
whole run a deadline). Python 3 standard library only; the CA and certificate come from the
`openssl` CLI (or `cryptography` when the interpreter has it).

The set (generated once, cached under target/bench-images/): ~40 images, ~500 MB of unique,
incompressible blobs (random bytes in gzip stored blocks, so no tool recompresses them),
base layers shared between images, some images multi-arch (an index over amd64 and arm64),
plus one image with a 1 GiB layer for the memory figure. It is pushed once into a plain
`docker-registry` (the source), whose storage is cached too.

The model (`ModelProxy`): a TCP proxy in front of the source that holds every new connection
and every request for one round trip (40 ms), caps each connection at 8 MB/s and the whole
link at 60 MB/s (token buckets; MB = 10^6 bytes), and counts requests and bytes.

The runs, same set, a fresh destination registry (TLS + htpasswd + a fixed http.secret, as
the registry host runs it) each time:
  model check       curl through the model, 1 and 8 connections (is the proxy keeping up?)
  skopeo serial     `skopeo copy --all` per image, one after the other (rancher-load-images)
  skopeo 4 at once  the same, four images at a time
  skopeo no-op      the serial run again into the filled registry
  ingest            the registry's own limit: every unique blob uploaded with curl,
                    monolithic (POST, then PUT ?digest=), four at once, on loopback
  provision pull    `images pull --all-platforms` through the model into a fresh store
  provision push    `images push --to` the fresh registry on loopback
  end to end        pull + push
  no-op re-runs     pull again through the model, push again
  archive           `images save --split 100M`, then `images push --archive` from the volumes
  kill -9           a pull killed when half the bytes are through, then run again: the
                    bytes fetched beyond a clean pull's, and the store's corrupt blobs
  1 GiB layer       pull (loopback) and push of the big image: peak RSS

Prints a Markdown table, replaces the "## Images" section of BENCHMARKS.md (unless
--no-write), and exits 1 naming every target missed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import fcntl
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
RTT = 0.040
CONN_RATE = 8 * MB
LINK_RATE = 60 * MB
SET_VERSION = 1
SET_UNIQUE = 500 * MB
BIG_LAYER = 1 << 30
USER = "bench"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def log(msg: str) -> None:
    print(f"[bench-images {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ------------------------------------------------------------------------------------------
# the set


class Layout:
    """An OCI image layout being written: blobs by digest."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> tuple[str, int]:
        hexd = hashlib.sha256(data).hexdigest()
        path = self.blobs / hexd
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.rename(path)
        return "sha256:" + hexd, len(data)

    def path(self, digest: str) -> Path:
        return self.blobs / digest.split(":", 1)[1]


def gzip_stored(payload: bytes) -> bytes:
    """A valid gzip stream of `payload` in stored blocks: incompressible, and fast to make."""
    c = zlib.compressobj(0, zlib.DEFLATED, 31)
    return c.compress(payload) + c.flush()


def image_manifest(layout: Layout, rng: random.Random, arch: str, layers: list[tuple[str, int, str]]):
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Env": [f"BENCH={rng.random()}"]},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, _, diff in layers]},
        },
        sort_keys=True,
    ).encode()
    cdig, csize = layout.put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cdig, "size": csize},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s, _ in layers],
        },
        sort_keys=True,
    ).encode()
    mdig, msize = layout.put(manifest)
    return {"mediaType": OCI_MANIFEST, "digest": mdig, "size": msize}


def make_layer(layout: Layout, rng: random.Random, size: int) -> tuple[str, int, str]:
    payload = rng.randbytes(size)
    diff = "sha256:" + hashlib.sha256(payload).hexdigest()
    digest, n = layout.put(gzip_stored(payload))
    return digest, n, diff


def generate_set(root: Path) -> dict:
    """~40 images, ~500 MB of unique blobs, shared bases, 6 multi-arch; cached in `root`."""
    meta_path = root / "set.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == SET_VERSION:
            return meta
    log(f"generating the image set in {root} (once; cached)")
    shutil.rmtree(root, ignore_errors=True)
    layout = Layout(root)
    rng = random.Random(20)
    bases_amd = {k: make_layer(layout, rng, s) for k, s in [("a", 30 * MB), ("b", 12 * MB), ("c", 4 * MB)]}
    base_arm = make_layer(layout, rng, 25 * MB)
    stacks = [["a"], ["a", "c"], ["b"], ["b", "c"], ["a", "b"]]
    base_bytes = sum(s for _, s, _ in bases_amd.values()) + base_arm[1]
    # Unique layer sizes first (long-tailed, as real sets are), then scaled to the total.
    plans = []
    for i in range(40):
        multi = i % 7 == 3
        arches = ["amd64", "arm64"] if multi else ["amd64"]
        per_arch = {}
        for arch in arches:
            count = rng.choice([1, 1, 2, 2, 3])
            per_arch[arch] = [rng.choice([0.3, 0.8, 2, 3, 5, 8, 12]) for _ in range(count)]
        if i in (5, 22):
            per_arch["amd64"].append(40)
        plans.append((i, stacks[i % len(stacks)], per_arch))
    total_plan = sum(sum(sum(v) for v in p[2].values()) for p in plans)
    scale = (SET_UNIQUE - base_bytes) / (total_plan * MB)
    images = []
    for i, stack, per_arch in plans:
        manifests = []
        for arch, sizes in per_arch.items():
            bases = [bases_amd[k] for k in stack] if arch == "amd64" else [base_arm]
            own = [make_layer(layout, rng, max(1000, int(s * MB * scale))) for s in sizes]
            desc = image_manifest(layout, rng, arch, bases + own)
            desc["platform"] = {"architecture": arch, "os": "linux"}
            manifests.append(desc)
        if len(manifests) == 1:
            top = {k: v for k, v in manifests[0].items() if k != "platform"}
        else:
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, sort_keys=True).encode()
            dig, size = layout.put(index)
            top = {"mediaType": OCI_INDEX, "digest": dig, "size": size}
        images.append({"name": f"bench/img{i:02d}", "tag": "v1", **top})
    write_index(root, images)
    meta = {
        "version": SET_VERSION,
        "images": images,
        "unique_bytes": sum(p.stat().st_size for p in layout.blobs.iterdir()),
        "blobs": len(list(layout.blobs.iterdir())),
    }
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def generate_big(root: Path) -> dict:
    """One image with a 1 GiB layer, written streaming (cached)."""
    meta_path = root / "set.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == SET_VERSION:
            return meta
    log(f"generating the 1 GiB layer in {root} (once; cached)")
    shutil.rmtree(root, ignore_errors=True)
    layout = Layout(root)
    rng = random.Random(1024)
    tmp = layout.blobs / "layer.tmp"
    outer, inner = hashlib.sha256(), hashlib.sha256()
    comp = zlib.compressobj(0, zlib.DEFLATED, 31)
    with open(tmp, "wb") as f:
        left = BIG_LAYER
        while left:
            chunk = rng.randbytes(min(left, 8 << 20))
            left -= len(chunk)
            inner.update(chunk)
            out = comp.compress(chunk)
            outer.update(out)
            f.write(out)
        out = comp.flush()
        outer.update(out)
        f.write(out)
    digest = "sha256:" + outer.hexdigest()
    size = tmp.stat().st_size
    tmp.rename(layout.path(digest))
    desc = image_manifest(layout, rng, "amd64", [(digest, size, "sha256:" + inner.hexdigest())])
    images = [{"name": "bench/big", "tag": "v1", **desc}]
    write_index(root, images)
    meta = {"version": SET_VERSION, "images": images, "unique_bytes": sum(p.stat().st_size for p in layout.blobs.iterdir())}
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def write_index(root: Path, images: list[dict]) -> None:
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for im in images:
        d = {k: im[k] for k in ("mediaType", "digest", "size")}
        d["annotations"] = {"org.opencontainers.image.ref.name": f"{im['name']}:{im['tag']}"}
        manifests.append(d)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def children(root: Path, digest: str) -> tuple[list[str], list[str]]:
    """(child manifests, blobs) of a manifest or index in the set's layout."""
    doc = json.loads((root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())
    if doc.get("mediaType") == OCI_INDEX or "manifests" in doc:
        return [m["digest"] for m in doc["manifests"]], []
    return [], [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]


# ------------------------------------------------------------------------------------------
# registries


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tls:
    """A CA, a server certificate for 127.0.0.1, an htpasswd and the clients' auth files."""

    def __init__(self, work: Path):
        self.dir = work / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        self.cert = self.dir / "server.crt"
        self.key = self.dir / "server.key"
        self.password = base64.b32encode(os.urandom(15)).decode().lower()
        self.htpasswd = self.dir / "htpasswd"
        self.cert_dir = self.dir / "certs.d"  # skopeo's --dest-cert-dir: ca.crt inside
        if shutil.which("openssl"):
            self._openssl()
        else:
            self._cryptography()
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copy(self.ca, self.cert_dir / "ca.crt")
        self.htpasswd.write_text(f"{USER}:{bcrypt_hash(self.password)}\n")
        self.basic = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        self.context = ssl.create_default_context(cafile=str(self.ca))

    def _openssl(self) -> None:
        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run_quiet(["openssl", "req", "-x509", *ec, "-keyout", d / "ca.key", "-out", self.ca, "-days", "2",
                   "-subj", "/CN=bench-images CA", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        run_quiet(["openssl", "req", *ec, "-keyout", self.key, "-out", d / "server.csr", "-subj", "/CN=127.0.0.1"])
        (d / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        run_quiet(["openssl", "x509", "-req", "-in", d / "server.csr", "-CA", self.ca, "-CAkey", d / "ca.key",
                   "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", d / "ext.cnf"])

    def _cryptography(self) -> None:
        try:
            import datetime
            import ipaddress

            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError as e:
            raise BenchError("no `openssl` CLI and no python `cryptography`: run with PYTHON=.venv/bin/python (make venv)") from e
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-images CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def auth_file(self, port: int) -> Path:
        path = self.dir / f"auth-{port}.json"
        path.write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": self.basic}}}))
        path.chmod(0o600)
        return path


def bcrypt_hash(password: str) -> str:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt  # standard library up to 3.12; glibc/libxcrypt does bcrypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        if hashed and hashed.startswith("$2"):
            return hashed
    except (ImportError, AttributeError):
        pass
    if shutil.which("htpasswd"):
        out = subprocess.run(["htpasswd", "-inB", USER], input=password, capture_output=True, text=True, check=True)
        return out.stdout.strip().split(":", 1)[1]
    raise BenchError("cannot make a bcrypt htpasswd: no python `crypt` with bcrypt and no `htpasswd` (apt-get install apache2-utils)")


def run_quiet(cmd: list) -> None:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise BenchError(f"`{' '.join(str(c) for c in cmd[:3])} …` failed: {out.stderr.strip()[-500:]}")


class Registry:
    """A `docker-registry` (distribution 2.8) on 127.0.0.1: plain, or TLS + htpasswd."""

    def __init__(self, work: Path, name: str, storage: Path, tls: Tls | None):
        self.name, self.tls, self.port = name, tls, free_port()
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  cache:",
            "    blobdescriptor: inmemory",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: bench-images-fixed-secret",
        ]
        if tls:
            lines += ["  tls:", f"    certificate: {tls.cert}", f"    key: {tls.key}",
                      "auth:", "  htpasswd:", "    realm: Registry", f"    path: {tls.htpasswd}"]
        config = work / f"{name}.yml"
        config.write_text("\n".join(lines) + "\n")
        self.access_log = work / f"{name}.access.log"
        self.error_log = work / f"{name}.log"
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=open(self.access_log, "wb"), stderr=open(self.error_log, "wb"), stdin=subprocess.DEVNULL,
        )
        deadline = time.time() + 15
        while True:
            try:
                status, _, _ = self.request("GET", "/v2/")
                if status in (200, 401):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise BenchError(f"registry {name} did not start: {self.error_log.read_text()[-800:]}")
            time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls.context, timeout=60, blocksize=1 << 20)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60, blocksize=1 << 20)

    def headers(self, extra: dict | None = None) -> dict:
        h = dict(extra or {})
        if self.tls:
            h["Authorization"] = "Basic " + self.tls.basic
        return h

    def request(self, method, path, body=None, headers=None, conn=None):
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=self.headers(headers))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
        finally:
            if own:
                conn.close()

    def requests_served(self) -> int:
        pattern = re.compile(rb'"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/')
        return sum(1 for line in self.access_log.read_bytes().splitlines() if pattern.search(line))

    def bytes_read(self) -> int:
        """Bytes the registry process read (`rchar`): what clients sent it, TLS included."""
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def manifest_digest(self, name: str, tag: str) -> str | None:
        status, headers, _ = self.request("HEAD", f"/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT})
        return headers.get("docker-content-digest") if status == 200 else None


def upload_layout(registry: Registry, root: Path, images: list[dict]) -> None:
    """Pushes a layout's images into a plain registry: blobs (monolithic), then manifests."""
    conn = registry.connection()
    pushed: dict[str, str] = {}

    def blob(name: str, digest: str) -> None:
        status, _, _ = registry.request("HEAD", f"/v2/{name}/blobs/{digest}", conn=conn)
        if status == 200:
            return
        if digest in pushed:
            status, _, _ = registry.request("POST", f"/v2/{name}/blobs/uploads/?mount={digest}&from={pushed[digest]}", conn=conn)
            if status == 201:
                return
        status, headers, _ = registry.request("POST", f"/v2/{name}/blobs/uploads/", conn=conn)
        if status != 202:
            raise BenchError(f"seeding {name}: POST upload answered {status}")
        loc = urllib.parse.urlsplit(headers["location"])
        path = f"{loc.path}?{loc.query}&digest={digest}" if loc.query else f"{loc.path}?digest={digest}"
        file = root / "blobs" / "sha256" / digest.split(":", 1)[1]
        with open(file, "rb") as f:
            status, _, body = registry.request("PUT", path, body=f, conn=conn, headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(file.stat().st_size)})
        if status != 201:
            raise BenchError(f"seeding {name}: PUT blob answered {status}: {body[:200]!r}")
        pushed[digest] = name

    def manifest(name: str, ref: str, digest: str) -> None:
        data = (root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        media = json.loads(data).get("mediaType", OCI_MANIFEST)
        status, _, body = registry.request("PUT", f"/v2/{name}/manifests/{ref}", body=data, conn=conn,
                                           headers={"Content-Type": media})
        if status != 201:
            raise BenchError(f"seeding {name}:{ref}: PUT manifest answered {status}: {body[:300]!r}")

    for im in images:
        subs, blobs = children(root, im["digest"])
        for sub in subs:
            _, sub_blobs = children(root, sub)
            for b in sub_blobs:
                blob(im["name"], b)
            manifest(im["name"], sub, sub)
        for b in blobs:
            blob(im["name"], b)
        manifest(im["name"], im["tag"], im["digest"])
    conn.close()


# ------------------------------------------------------------------------------------------
# the model of a far source


class Bucket:
    """A token bucket as a virtual clock: when the bytes reserved so far may have been sent."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.slack, self.t = rate, burst / rate, 0.0

    def reserve(self, n: int, now: float) -> float:
        self.t = max(self.t, now - self.slack) + n / self.rate
        return self.t - self.slack


class ModelProxy:
    """TCP proxy in front of the source: 40 ms per connection and per request, 8 MB/s per
    connection, 60 MB/s for the link. Runs its own event loop in a thread."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.requests = 0
        self.connections = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.link = Bucket(LINK_RATE, 256 * 1024)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", 0), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stats(self) -> dict:
        return {"requests": self.requests, "bytes": self.bytes_down, "connections": self.connections}

    async def handle(self, creader, cwriter):
        self.connections += 1
        try:
            await asyncio.sleep(RTT)  # the TCP handshake
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cwriter.close()
            return
        conn = Bucket(CONN_RATE, 64 * 1024)
        try:
            await asyncio.gather(self.up(creader, uwriter), self.down(ureader, cwriter, conn), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the proxy is closing
        for w in (cwriter, uwriter):
            w.close()

    async def up(self, reader, writer):
        """Client → source: every request head held one round trip (a pull sends no bodies;
        a Content-Length body is passed through)."""
        buf, body_left = b"", 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.bytes_up += len(data)
                buf += data
                while buf:
                    if body_left:
                        n = min(body_left, len(buf))
                        writer.write(buf[:n])
                        buf, body_left = buf[n:], body_left - n
                        continue
                    if not buf[:1].isalpha():  # not HTTP (a TLS hello): through after a round trip
                        await asyncio.sleep(RTT)
                        writer.write(buf)
                        buf = b""
                        break
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[: end + 4], buf[end + 4:]
                    self.requests += 1
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    body_left = int(m.group(1)) if m else 0
                    await asyncio.sleep(RTT)
                    writer.write(head)
                await writer.drain()
        finally:
            try:
                writer.write_eof()
            except OSError:
                pass

    async def down(self, reader, writer, conn: Bucket):
        """Source → client, paced by the connection's and the link's buckets."""
        try:
            while True:
                data = await reader.read(131072)
                if not data:
                    break
                now = self.loop.time()
                n = len(data)
                wait = max(conn.reserve(n, now), self.link.reserve(n, now)) - now
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                self.bytes_down += n
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        except Exception:  # noqa: BLE001 - closing at the end: nothing left to save
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ------------------------------------------------------------------------------------------
# running commands


class Result:
    def __init__(self, wall: float, rc: int, rss_kb: int, out: Path):
        self.wall, self.rc, self.rss_kb, self.out = wall, rc, rss_kb, out

    def tail(self) -> str:
        try:
            return self.out.read_text(errors="replace")[-1500:]
        except OSError:
            return ""


# Peak RSS: a child's own `ru_maxrss` from wait4 also holds the RSS of the process it was
# forked from (Linux records the old image's high-water mark at exec): the Python running
# this script. GNU time forks from itself (a few MB), so its %M is the command's own.
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


def start(cmd: list, out: Path, env: dict | None = None, cwd: Path | None = None,
          rss_file: Path | None = None) -> subprocess.Popen:
    """Starts `cmd` in its own process group; under GNU time when `rss_file` is given."""
    f = open(out, "ab")
    argv = [str(c) for c in cmd]
    if rss_file is not None and GNU_TIME:
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv]
    return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(proc: subprocess.Popen, t0: float, out: Path, timeout: float, rss_file: Path | None = None) -> Result:
    """Waits for `proc` (its group killed after `timeout`), with its peak RSS."""
    timer = threading.Timer(timeout, lambda: proc.poll() is None and kill_group(proc))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss
    if rss_file is not None and GNU_TIME:
        try:
            rss = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            rss = 0
        rss_file.unlink(missing_ok=True)
    return Result(wall, proc.returncode, rss, out)


_rss_files = iter(range(1 << 30))
# The whole run's deadline (time.monotonic()): no command outlives it.
DEADLINE: float | None = None


def run(cmd: list, out: Path, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> Result:
    rss_file = out.parent / f".rss-{os.getpid()}-{next(_rss_files)}"
    t0 = time.monotonic()
    if DEADLINE is not None:
        if t0 >= DEADLINE:
            raise BenchError(f"the run's deadline passed before `{Path(str(cmd[0])).name}` could start")
        timeout = max(1.0, min(timeout, DEADLINE - t0))
    return reap(start(cmd, out, env, cwd, rss_file), t0, out, timeout, rss_file)


def check(result: Result, what: str) -> Result:
    if result.rc != 0:
        raise BenchError(f"{what} exited {result.rc}:\n{result.tail()}")
    return result


# ------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.cache = Path(args.work).resolve()
        self.cache.mkdir(parents=True, exist_ok=True)
        # One benchmark at a time on a cache (the set, the source's storage).
        self.lock = open(self.cache / ".lock", "w")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another bench-images uses {self.cache}; waiting for it")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.run_dir = self.cache / "run"
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.figures: dict = {}
        self.registries: list[Registry] = []
        self.dest_count = 0
        self.load_start = os.getloadavg()[0]
        self.revision = source_revision()  # what `make bench-images` just built

    # --- setup
    def setup(self):
        for tool in ("skopeo", "docker-registry"):
            if not shutil.which(tool):
                raise BenchError(f"`{tool}` is not installed (apt-get install {tool})")
        self.set = generate_set(self.cache / "set")
        self.set_root = self.cache / "set"
        self.images = self.set["images"]
        self.unique = self.set["unique_bytes"]
        self.big = generate_big(self.cache / "big")
        source_storage = self.cache / "source-storage"
        marker = self.cache / "source-seeded.json"
        seeded = marker.exists() and json.loads(marker.read_text()).get("version") == SET_VERSION
        if not seeded:
            shutil.rmtree(source_storage, ignore_errors=True)
        self.source = self.registry("source", source_storage, tls=None)
        if not seeded:
            log("seeding the source registry (once; cached)")
            upload_layout(self.source, self.set_root, self.images)
            upload_layout(self.source, self.cache / "big", self.big["images"])
            marker.write_text(json.dumps({"version": SET_VERSION}))
        for im in self.images + self.big["images"]:
            got = self.source.manifest_digest(im["name"], im["tag"])
            if got != im["digest"]:
                raise BenchError(f"source registry: {im['name']}:{im['tag']} is {got}, expected {im['digest']} (remove {marker})")
        self.tls = Tls(self.run_dir)
        self.proxy = ModelProxy(self.source.port)
        self.list_file = self.run_dir / "images.txt"
        self.list_file.write_text("# the benchmark's set\n" + "".join(f"{i['name']}:{i['tag']}\n" for i in self.images))
        self.big_list = self.run_dir / "big.txt"
        self.big_list.write_text("".join(f"{i['name']}:{i['tag']}\n" for i in self.big["images"]))
        multi = sum(1 for i in self.images if i["mediaType"] == OCI_INDEX)
        log(f"set: {len(self.images)} images ({multi} multi-arch), {self.set['blobs']} blobs, "
            f"{self.unique / MB:.0f} MB unique; source {self.source.host}, model proxy 127.0.0.1:{self.proxy.port}")

    def registry(self, name: str, storage: Path, tls: Tls | None) -> Registry:
        r = Registry(self.run_dir, name, storage, tls)
        self.registries.append(r)
        return r

    def fresh_destination(self) -> Registry:
        self.dest_count += 1
        name = f"dest{self.dest_count}"
        return self.registry(name, self.run_dir / name, self.tls)

    def done_with(self, reg: Registry) -> None:
        reg.stop()
        shutil.rmtree(self.run_dir / reg.name, ignore_errors=True)

    def deadline_check(self):
        if time.monotonic() > self.args.deadline_at:
            raise BenchError(f"the benchmark ran past its {self.args.deadline} s deadline")

    def digests_kept(self, dest: Registry, images: list[dict]) -> bool:
        bad = [f"{i['name']}:{i['tag']}" for i in images if dest.manifest_digest(i["name"], i["tag"]) != i["digest"]]
        if bad:
            self.notes.append(f"{dest.name}: {len(bad)} images missing or with another digest: {', '.join(bad[:5])}")
        return not bad

    def row(self, run: str, wall: float, unique: int, fetched: int | None = None, sent: int | None = None,
            requests: int | None = None, rss_kb: int | None = None, ok: bool | None = None, note: str = ""):
        r = {"run": run, "wall": wall, "mbps": unique / MB / wall if unique and wall else None,
             "fetched": fetched / self.unique if fetched is not None else None,
             "sent": sent / self.unique if sent is not None else None,
             "requests": requests, "rss_mb": rss_kb / 1024 if rss_kb else None, "ok": ok, "note": note}
        self.rows.append(r)
        log(f"{run}: {wall:.2f} s" + (f", {r['mbps']:.1f} MB/s" if r["mbps"] else "") +
            (f", {requests} requests" if requests is not None else "") + (f" {note}" if note else ""))
        return r

    # --- skopeo
    def skopeo_cmd(self, im: dict, dest: Registry, auth: Path) -> list:
        return ["skopeo", "--insecure-policy", "copy", "--all", "--quiet", "--src-tls-verify=false",
                "--dest-cert-dir", self.tls.cert_dir, "--dest-authfile", auth,
                f"docker://127.0.0.1:{self.proxy.port}/{im['name']}:{im['tag']}",
                f"docker://{dest.host}/{im['name']}:{im['tag']}"]

    def skopeo_all(self, dest: Registry, workers: int, label: str) -> dict:
        auth = self.tls.auth_file(dest.port)
        env = {"REGISTRY_AUTH_FILE": str(auth)}
        p0, r0, q0 = self.proxy.stats(), dest.bytes_read(), dest.requests_served()
        out = self.run_dir / f"{label}.log"
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda im: run(self.skopeo_cmd(im, dest, auth), out, env, timeout=300), self.images))
        wall = time.monotonic() - t0
        for res in results:
            check(res, f"skopeo ({label})")
        p1 = self.proxy.stats()
        return {"wall": wall, "fetched": p1["bytes"] - p0["bytes"], "requests": p1["requests"] - p0["requests"],
                "sent": dest.bytes_read() - r0, "dest_requests": dest.requests_served() - q0,
                "rss": max(r.rss_kb for r in results)}

    def run_skopeo(self):
        dest = self.fresh_destination()
        log(f"skopeo copy --all, serially, through the model -> {dest.host}")
        s = self.skopeo_all(dest, 1, "skopeo-serial")
        self.figures["skopeo_serial"] = s["wall"]
        self.row("skopeo `copy --all`, one image at a time", s["wall"], self.unique, s["fetched"], s["sent"],
                 s["requests"], s["rss"], self.digests_kept(dest, self.images), "RSS per process")
        self.deadline_check()
        log("skopeo again, nothing to copy")
        s = self.skopeo_all(dest, 1, "skopeo-noop")
        self.figures["skopeo_noop"] = s["wall"]
        self.row("skopeo re-run, nothing to copy", s["wall"], 0, s["fetched"], s["sent"], s["requests"], s["rss"])
        self.done_with(dest)
        self.deadline_check()
        dest = self.fresh_destination()
        log(f"skopeo copy --all, 4 at once, through the model -> {dest.host}")
        s = self.skopeo_all(dest, 4, "skopeo-4")
        self.figures["skopeo_4"] = s["wall"]
        self.row("skopeo `copy --all`, 4 images at once", s["wall"], self.unique, s["fetched"], s["sent"],
                 s["requests"], s["rss"], self.digests_kept(dest, self.images), "RSS per process")
        self.done_with(dest)

    # --- the model itself
    def run_model_check(self):
        """What the model delivers to curl: one connection, then eight at once (ranged GETs
        of the big layer), so a slow proxy on a busy machine shows instead of hiding in
        the tools' figures."""
        if not shutil.which("curl"):
            self.notes.append("the model was not checked: no curl")
            return
        big = self.big["images"][0]
        _, blobs = children(self.cache / "big", big["digest"])
        layer = max(blobs, key=lambda d: (self.cache / "big" / "blobs" / "sha256" / d.split(":", 1)[1]).stat().st_size)
        url = f"http://127.0.0.1:{self.proxy.port}/v2/{big['name']}/blobs/{layer}"
        part = 24 * MB
        out = self.run_dir / "model-check.log"
        for conns in (1, 8):
            log(f"model check: {conns} connection(s), {part / MB:.0f} MB each")
            t0 = time.monotonic()
            procs = [start(["curl", "-sS", "--fail", "-o", "/dev/null", "-r", f"{i * part}-{(i + 1) * part - 1}", url], out)
                     for i in range(conns)]
            for proc in procs:
                check(reap(proc, t0, out, 120), "curl through the model")
            wall = time.monotonic() - t0
            rate = conns * part / MB / wall
            expected = min(conns * CONN_RATE, LINK_RATE) / MB
            self.figures[f"model_{conns}"] = rate
            self.row(f"the model to curl, {conns} connection{'s' if conns > 1 else ''} (ranged GETs)", wall,
                     conns * part, note=f"model: {expected:.0f} MB/s less one round trip")

    # --- the registry's own limit
    def run_ingest(self):
        """The registry's own limit: every unique blob uploaded monolithically (POST, then
        PUT ?digest=) by 4 clients at once, each a single curl keeping its connection (no
        process start or TLS handshake per blob), so the client costs as little as it can."""
        dest = self.fresh_destination()
        blobs = sorted(self.set_root.joinpath("blobs", "sha256").iterdir(), key=lambda p: -p.stat().st_size)
        netrc = self.tls.dir / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login {USER} password {self.tls.password}\n")
        netrc.chmod(0o600)
        use_curl = shutil.which("curl") is not None
        client = "curl" if use_curl else "python"
        groups: list[list[Path]] = [[] for _ in range(4)]
        loads = [0] * 4
        for path in blobs:  # largest first into the lightest group: equal bytes per client
            i = loads.index(min(loads))
            groups[i].append(path)
            loads[i] += path.stat().st_size
        r0 = dest.bytes_read()
        out = self.run_dir / "ingest.log"
        log(f"the registry's ingest limit: {len(blobs)} blobs, monolithic, 4 clients at once ({client})")

        def upload(group: list[Path]) -> None:
            conn = dest.connection()
            targets = []
            for path in group:
                status, headers, _ = dest.request("POST", "/v2/bench/ingest/blobs/uploads/", conn=conn)
                if status != 202:
                    raise BenchError(f"ingest: POST answered {status}")
                loc = urllib.parse.urlsplit(headers["location"])
                targets.append((path, f"{loc.path}?{loc.query}&digest=sha256:{path.name}"))
            if use_curl:
                conn.close()
                # No `Expect: 100-continue` (curl's default for large PUTs): a round trip per
                # blob that registry clients do not spend.
                args = ["curl", "-sS", "--fail", "--cacert", self.tls.ca, "--netrc-file", netrc,
                        "-H", "Content-Type: application/octet-stream", "-H", "Expect:"]
                for path, target in targets:
                    args += ["-T", path, f"https://{dest.host}{target}"]
                check(run(args, out, timeout=300), "curl PUT")
                return
            for path, target in targets:
                with open(path, "rb") as f:
                    status, _, _ = dest.request("PUT", target, body=f, conn=conn, headers={
                        "Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)})
                if status != 201:
                    raise BenchError(f"ingest: PUT answered {status}")
            conn.close()

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, groups))
        wall = time.monotonic() - t0
        missing = [p.name for p in blobs if dest.request("HEAD", f"/v2/bench/ingest/blobs/sha256:{p.name}")[0] != 200]
        if missing:
            raise BenchError(f"ingest: {len(missing)} blobs did not land, e.g. sha256:{missing[0]}")
        self.figures["ingest_mbps"] = self.unique / MB / wall
        self.row(f"registry ingest limit ({client}, monolithic, 4 clients, loopback)",
                 wall, self.unique, None, dest.bytes_read() - r0, None, None)
        self.done_with(dest)

    # --- provision
    def provision_ok(self) -> bool:
        bin_ = Path(self.args.bin)
        if not bin_.exists():
            self.notes.append(f"provision NOT measured: no binary at {bin_} (cargo build --release --no-default-features)")
            return False
        out = subprocess.run([str(bin_), "images", "--help"], capture_output=True, text=True)
        needed = ["pull", "push"]
        if out.returncode != 0 or not all(w in out.stdout for w in needed):
            self.notes.append(f"provision NOT measured: `{bin_} images --help` does not offer pull and push")
            return False
        return True

    def pull_cmd(self, store: Path, list_file: Path, port: int) -> list:
        return [self.args.bin, "images", "pull", "--list", list_file, "--source-registry", f"127.0.0.1:{port}",
                "--source-plain-http", "--store", store, "--all-platforms"]

    def push_cmd(self, store: Path, dest: Registry) -> list:
        return [self.args.bin, "images", "push", "--store", store, "--to", dest.host, "--to-ca", self.tls.ca]

    def pull(self, store: Path, label: str, list_file: Path | None = None, port: int | None = None) -> dict:
        p0 = self.proxy.stats()
        res = check(run(self.pull_cmd(store, list_file or self.list_file, port or self.proxy.port),
                        self.run_dir / f"{label}.log", cwd=self.run_dir, timeout=600), f"provision images pull ({label})")
        p1 = self.proxy.stats()
        return {"wall": res.wall, "fetched": p1["bytes"] - p0["bytes"], "requests": p1["requests"] - p0["requests"], "rss": res.rss_kb}

    def push(self, store: Path, dest: Registry, label: str) -> dict:
        env = {"REGISTRY_AUTH_FILE": str(self.tls.auth_file(dest.port))}
        r0, q0 = dest.bytes_read(), dest.requests_served()
        res = check(run(self.push_cmd(store, dest), self.run_dir / f"{label}.log", env, cwd=self.run_dir, timeout=600),
                    f"provision images push ({label})")
        return {"wall": res.wall, "sent": dest.bytes_read() - r0, "requests": dest.requests_served() - q0, "rss": res.rss_kb}

    def run_provision(self):
        store = self.run_dir / "store"
        log("provision images pull, through the model")
        p = self.pull(store, "pull")
        self.figures.update(pull_wall=p["wall"], pull_mbps=self.unique / MB / p["wall"], pull_fetched=p["fetched"])
        self.row("provision `images pull --all-platforms` (model)", p["wall"], self.unique, p["fetched"], None,
                 p["requests"], p["rss"])
        dest = self.fresh_destination()
        log(f"provision images push -> {dest.host}")
        q = self.push(store, dest, "push")
        self.figures.update(push_wall=q["wall"], push_mbps=self.unique / MB / q["wall"], push_sent=q["sent"])
        self.row("provision `images push --to` (loopback)", q["wall"], self.unique, None, q["sent"], q["requests"],
                 q["rss"], self.digests_kept(dest, self.images), "requests: the registry's")
        e2e = p["wall"] + q["wall"]
        self.figures["e2e"] = e2e
        self.row("provision pull + push, end to end", e2e, self.unique, p["fetched"], q["sent"], None,
                 max(p["rss"], q["rss"]))
        self.deadline_check()
        log("no-op re-runs")
        n = self.pull(store, "pull-noop")
        self.figures.update(noop_wall=n["wall"], noop_requests=n["requests"])
        self.row("provision pull re-run, nothing new (model)", n["wall"], 0, n["fetched"], None, n["requests"], n["rss"])
        n = self.push(store, dest, "push-noop")
        self.row("provision push re-run, nothing new (loopback)", n["wall"], 0, None, n["sent"], n["requests"], n["rss"],
                 note="requests: the registry's")
        self.done_with(dest)
        self.deadline_check()
        self.run_archive(store)
        self.deadline_check()
        self.run_kill()
        self.deadline_check()
        self.run_big()

    def run_archive(self, store: Path):
        """The two-phase route: the store saved as split volumes, pushed from them."""
        archive = self.run_dir / "archive" / "images.tar"
        log("provision images save --split 100M, then push --archive")
        res = check(run([self.args.bin, "images", "save", "--archive", archive, "--store", store, "--split", "100M"],
                        self.run_dir / "save.log", cwd=self.run_dir, timeout=600), "provision images save")
        volumes = sorted(archive.parent.glob("images.tar.[0-9][0-9][0-9]"))
        self.row("provision `images save --split 100M`", res.wall, self.unique, None, None, None, res.rss_kb,
                 note=f"{len(volumes)} volumes")
        dest = self.fresh_destination()
        env = {"REGISTRY_AUTH_FILE": str(self.tls.auth_file(dest.port))}
        r0, q0 = dest.bytes_read(), dest.requests_served()
        res = check(run([self.args.bin, "images", "push", "--archive", archive, "--to", dest.host, "--to-ca", self.tls.ca],
                        self.run_dir / "push-archive.log", env, cwd=self.run_dir, timeout=600), "provision images push --archive")
        self.row("provision `images push --archive` (loopback)", res.wall, self.unique, None, dest.bytes_read() - r0,
                 dest.requests_served() - q0, res.rss_kb, self.digests_kept(dest, self.images),
                 "read in place from the volumes; requests: the registry's")
        self.done_with(dest)
        shutil.rmtree(archive.parent, ignore_errors=True)

    def run_kill(self):
        store = self.run_dir / "store-kill"
        log("kill -9 in the middle of a pull, then the pull again")
        p0 = self.proxy.stats()
        out = self.run_dir / "pull-kill.log"
        t0 = time.monotonic()
        proc = start(self.pull_cmd(store, self.list_file, self.proxy.port), out, cwd=self.run_dir)
        half = self.unique // 2
        while proc.poll() is None and self.proxy.stats()["bytes"] - p0["bytes"] < half and time.monotonic() - t0 < 300:
            time.sleep(0.01)
        killed = proc.poll() is None
        if killed:
            kill_group(proc)
        proc.wait()
        first = self.proxy.stats()["bytes"] - p0["bytes"]
        again = self.pull(store, "pull-after-kill")
        total = first + again["fetched"]
        waste = total - self.figures["pull_fetched"]
        corrupt = corrupt_blobs(store)
        self.figures.update(kill_waste=waste, kill_corrupt=corrupt, kill_first=first)
        note = (f"killed after {first / MB:.0f} MB; fetched again: {max(waste, 0) / MB:.1f} MB; corrupt blobs: {corrupt}"
                if killed else "the pull finished before the kill")
        self.row("provision pull, kill -9 at half, re-run (model)", again["wall"], 0, total, None, again["requests"],
                 again["rss"], corrupt == 0, note)

    def run_big(self):
        store = self.run_dir / "store-big"
        size = self.big["unique_bytes"]
        log("the 1 GiB layer: pull (loopback, no model) and push")
        p = self.pull(store, "pull-big", self.big_list, self.source.port)
        dest = self.fresh_destination()
        q = self.push(store, dest, "push-big")
        self.figures.update(big_pull_rss=p["rss"] / 1024, big_push_rss=q["rss"] / 1024)
        self.row("provision pull, one 1 GiB layer (loopback)", p["wall"], size, None, None, None, p["rss"])
        self.row("provision push, one 1 GiB layer (loopback)", q["wall"], size, None, None, q["requests"], q["rss"],
                 self.digests_kept(dest, self.big["images"]))
        self.done_with(dest)
        shutil.rmtree(store, ignore_errors=True)

    # --- targets
    def targets(self) -> list[tuple[str, bool, str]]:
        f = self.figures
        out = []
        if "pull_mbps" in f:
            out.append(("pull through the model ≥ 48 MB/s (80% of the link)", f["pull_mbps"] >= 48, f"{f['pull_mbps']:.1f} MB/s"))
        if "push_mbps" in f and "ingest_mbps" in f:
            need = 0.9 * f["ingest_mbps"]
            out.append((f"push on loopback ≥ 90% of the registry's ingest ({need:.1f} MB/s)", f["push_mbps"] >= need, f"{f['push_mbps']:.1f} MB/s"))
        if "e2e" in f and "skopeo_4" in f:
            out.append(("pull + push ≥ 2× skopeo 4 at once", f["e2e"] * 2 <= f["skopeo_4"], f"{f['skopeo_4'] / f['e2e']:.2f}×"))
        if "e2e" in f and "skopeo_serial" in f:
            out.append(("pull + push ≥ 5× skopeo serially", f["e2e"] * 5 <= f["skopeo_serial"], f"{f['skopeo_serial'] / f['e2e']:.2f}×"))
        if "push_sent" in f:
            out.append(("bytes sent ≤ 1.02× the unique bytes (push)", f["push_sent"] <= 1.02 * self.unique, f"{f['push_sent'] / self.unique:.3f}×"))
        if "pull_fetched" in f:
            out.append(("bytes fetched ≤ 1.02× the unique bytes (pull)", f["pull_fetched"] <= 1.02 * self.unique, f"{f['pull_fetched'] / self.unique:.3f}×"))
        if "noop_wall" in f:
            out.append((f"no-op pull ≤ 1 request per image ({len(self.images)})", f["noop_requests"] <= len(self.images), f"{f['noop_requests']} requests"))
            out.append(("no-op pull < 1 s through the model", f["noop_wall"] < 1.0, f"{f['noop_wall']:.2f} s"))
        for conns in (1, 8):
            if f"model_{conns}" in f:
                expected = min(conns * CONN_RATE, LINK_RATE) / MB
                out.append((f"the model delivers ≥ 90% of {expected:.0f} MB/s on {conns} connection(s) (else the machine is too busy)",
                            f[f"model_{conns}"] >= 0.9 * expected, f"{f[f'model_{conns}']:.1f} MB/s"))
        if "kill_corrupt" in f:
            out.append(("kill -9 mid-pull, re-run: 0 corrupt blobs", f["kill_corrupt"] == 0, f"{f['kill_corrupt']}"))
        for k, what in (("big_pull_rss", "pull"), ("big_push_rss", "push")):
            if k in f:
                out.append((f"peak RSS ≤ 150 MB, {what} of a 1 GiB layer", f[k] <= 150, f"{f[k]:.0f} MB"))
        for r in self.rows:
            if r["ok"] is False:
                out.append((f"{r['run']}: content complete with the source's digests", False, "no"))
        return out

    def render(self, command: str) -> str:
        def num(v, fmt):
            return "–" if v is None else format(v, fmt)

        lines = [
            "| run | wall s | MB/s (unique) | fetched / unique | sent / unique | requests | peak RSS MB | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.rows:
            lines.append(f"| {r['run']} | {r['wall']:.2f} | {num(r['mbps'], '.1f')} | {num(r['fetched'], '.3f')} | "
                         f"{num(r['sent'], '.3f')} | {num(r['requests'], 'd')} | {num(r['rss_mb'], '.0f')} | {r['note']} |")
        lines += ["", "| target | result | |", "|---|---:|---|"]
        for what, ok, value in self.targets():
            lines.append(f"| {what} | {value} | {'met' if ok else '**missed**'} |")
        multi = sum(1 for i in self.images if i["mediaType"] == OCI_INDEX)
        head = [
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{command}` "
            f"(the binary built from {self.revision}): "
            f"{len(self.images)} images ({multi} multi-arch), {self.set['blobs']} blobs, "
            f"{self.unique / MB:.0f} MB unique; skopeo {skopeo_version()}, {registry_version()}; "
            f"{os.cpu_count()} CPUs, load average {self.load_start:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (other work on the machine moves the figures).",
            "",
        ]
        notes = [""] + [f"- {n}" for n in self.notes] if self.notes else []
        return "\n".join(head + lines + notes) + "\n"


def corrupt_blobs(store: Path) -> int:
    bad = 0
    blobs = store / "blobs" / "sha256"
    for p in blobs.iterdir() if blobs.exists() else []:
        if len(p.name) != 64:
            continue
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        bad += h.hexdigest() != p.name
    return bad


def source_revision() -> str:
    """The commit the benchmark ran at, and whether the work tree differed from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "an unknown revision"
    if not head:
        return "an unknown revision"
    return f"{head} with uncommitted changes in src/" if dirty else head


def skopeo_version() -> str:
    out = subprocess.run(["skopeo", "--version"], capture_output=True, text=True)
    return out.stdout.strip().split()[-1] if out.returncode == 0 else "?"


def registry_version() -> str:
    out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True)
    return "docker-registry " + (out.stdout.strip().split()[-1] if out.returncode == 0 else "?")


SECTION_INTRO = """## Images: filling a registry (`make bench-images`)

`make bench-images` builds the release binary without the AWS SDK (`cargo build --release
--no-default-features`: `provision images` needs none of it) and runs
`scripts/bench-images.sh` (= `scripts/bench_images.py`, Python standard library only). Everything
runs on 127.0.0.1: a plain `docker-registry` as the source, seeded once with a generated set
(cached under `target/bench-images/`: random bytes in gzip stored blocks, so nothing
recompresses them; base layers shared between images; multi-arch indexes over amd64 and arm64),
and before each run a fresh destination `docker-registry` with TLS, htpasswd and a fixed
`http.secret`, as the registry host runs it.

**The model** of a far source, a proxy in front of it (`ModelProxy`): every new connection and
every request held one round trip (40 ms), each connection capped at 8 MB/s and the link at
60 MB/s (token buckets; MB = 10^6 bytes). Pushes go to the destination on loopback, without
the model. skopeo copies `--all` platforms, so provision pulls with `--all-platforms`.

Columns: *MB/s* is the set's unique bytes over the wall time; *fetched* is what the proxy
sent the client (headers included) over the unique bytes; *sent* is what the destination
registry read from its sockets (its `rchar`, TLS included) over the unique bytes; *requests*
are those the proxy saw (the source's), or the destination's access log where noted; *peak
RSS* is GNU time's `%M` for the command (for skopeo the largest of its processes). The
model rows check the proxy itself (curl's ranged GETs of the big layer): a busy machine
shows there first. The save and push `--archive` rows are the two-phase route: the store
written as 100 MB volumes, then pushed from them without extracting. The
no-op rows copy nothing; the kill row is a pull killed (`SIGKILL`) when half the bytes are
through and its re-run: *fetched* counts both, the note the bytes fetched beyond a clean pull's.
The benchmark exits 1 naming each target missed.
"""


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = SECTION_INTRO + "\n" + body
    m = re.search(r"(?m)^## Images\b.*?(?=^## |\Z)", text, re.S)
    if m:
        text = text[: m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("PROVISION_BIN", str(ROOT / "target" / "release" / "provision")))
    ap.add_argument("--work", default=str(ROOT / "target" / "bench-images"), help="cache and scratch directory")
    ap.add_argument("--skip-skopeo", action="store_true", help="only the registry's limit and provision")
    ap.add_argument("--skip-provision", action="store_true", help="only skopeo and the registry's limit")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    ap.add_argument("--deadline", type=float, default=1800, help="seconds the whole run may take")
    ap.add_argument("--command", default="make bench-images", help="the command named in BENCHMARKS.md")
    args = ap.parse_args()
    global DEADLINE
    args.deadline_at = time.monotonic() + args.deadline
    DEADLINE = args.deadline_at
    args.bin = str(Path(args.bin).resolve())

    bench = Bench(args)
    failed = None
    try:
        bench.setup()
        bench.run_model_check()
        if not args.skip_skopeo:
            bench.run_skopeo()
            bench.deadline_check()
        bench.run_ingest()
        bench.deadline_check()
        if not args.skip_provision and bench.provision_ok():
            bench.run_provision()
    except BenchError as e:
        failed = str(e)
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        for r in bench.registries:
            r.stop()
        if hasattr(bench, "proxy"):
            bench.proxy.close()
    if failed:
        bench.notes.append(f"the run stopped early: {failed}")
    if not bench.rows:
        print(f"bench-images: {failed}", file=sys.stderr)
        return 1
    body = bench.render(args.command)
    print(body)
    if not args.no_write and not args.skip_skopeo and not args.skip_provision:
        write_section(ROOT / "BENCHMARKS.md", body)
        log("BENCHMARKS.md: section \"## Images\" replaced")
    missed = [what for what, ok, _ in bench.targets() if not ok]
    if any(n.startswith("provision NOT measured") for n in bench.notes):
        missed.append("provision was not measured")
    if failed:
        missed.append(f"the run did not finish: {failed}")
    for m in missed:
        print(f"bench-images: target missed: {m}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
