"""A real private registry for tests: Debian's docker-registry (distribution 2.8) with TLS from a test
CA made by openssl and htpasswd (bcrypt) credentials, and a small registry v2 client that pushes the
simulator's tiny images (real names and tags) into it.

    ca = make_ca(d)                                         # d/ca.crt, d/ca.key
    cert, key = server_cert(d, ca, ["127.0.0.1"])          # SANs: IPs or DNS names
    write_htpasswd(d / "htpasswd", "kubeforge-pull", password)
    with running_registry(d, "127.0.0.1", port, cert, key, d / "htpasswd") as url:
        push(url, "k8s/pause:3.10.1", "127.0.0.1:5000/k8s/pause:3.10.1", auth=basic(user, pw), ca=ca)

The password never goes in an argv: bcrypt hashes it in this process, and pushes send it as a header.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.sim.kubesim.images import digest, image_parts

REGISTRY_BIN = "docker-registry"


def _openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True)


def make_ca(d: Path, name: str = "kubeforge test registry CA") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    return d / "ca.crt"


def server_cert(d: Path, ca: Path, names: list[str]) -> tuple[Path, Path]:
    """A serving certificate for ``names`` (IP addresses or DNS names) signed by ``ca``."""
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    key, csr, crt, ext = d / "registry.key", d / "registry.csr", d / "registry.crt", d / "registry.ext"
    ext.write_text(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
             f"/CN={names[0]}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return crt, key


def write_htpasswd(path: Path, user: str, password: str) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o600)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def config(root: Path, addr: str, port: int, cert: Path, key: Path, htpasswd: Path) -> str:
    return json.dumps({  # YAML is a superset of JSON
        "version": 0.1, "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"{addr}:{port}", "tls": {"certificate": str(cert), "key": str(key)}},
        "auth": {"htpasswd": {"realm": "kubeforge-test", "path": str(htpasswd)}},
    }, indent=1)


@contextlib.contextmanager
def running_registry(d: Path, addr: str, port: int, cert: Path, key: Path, htpasswd: Path):
    """docker-registry serving on https://addr:port until the block ends; yields that URL."""
    if not shutil.which(REGISTRY_BIN):
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    (d / "registry.yml").write_text(config(d, addr, port, cert, key, htpasswd))
    with open(d / "registry.log", "wb") as log:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(d / "registry.yml")], stdout=log, stderr=log)
    try:
        deadline = time.time() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection((addr, port), timeout=0.5):
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(d / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"https://{addr}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _request(method: str, url: str, body: bytes | None, headers: dict[str, str], ca: Path) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url}: {e.code} {e.read()[:300]!r}") from None


def push(url: str, repo_tag: str, ref: str, *, auth: str, ca: Path) -> None:
    """Push the simulator's tiny image named ``ref`` as ``repo_tag`` (path:tag inside the registry)."""
    repo, tag = repo_tag.rsplit(":", 1)
    manifest, blobs, _ = image_parts(ref)
    h = {"Authorization": auth}
    for blob in blobs:
        _, headers = _request("POST", f"{url}/v2/{repo}/blobs/uploads/", b"", h, ca)
        location = headers["Location"]
        location = location if location.startswith("http") else url + location
        sep = "&" if "?" in location else "?"
        _request("PUT", f"{location}{sep}digest={digest(blob)}", blob,
                 {**h, "Content-Type": "application/octet-stream"}, ca)
    _request("PUT", f"{url}/v2/{repo}/manifests/{tag}", manifest,
             {**h, "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, ca)


@contextlib.contextmanager
def serving_registry(d: Path, user: str, password: str):
    """A private registry on a free loopback port with TLS from a fresh test CA and ``user``'s
    htpasswd; yields (https URL, host:port, CA certificate path). Skips (fails in CI) without
    docker-registry."""
    from tests.need import skip_or_fail

    if not shutil.which(REGISTRY_BIN):
        skip_or_fail("needs Debian's docker-registry (apt-get install docker-registry)")
    ca = make_ca(d)
    cert, key = server_cert(d, ca, ["127.0.0.1"])
    write_htpasswd(d / "htpasswd", user, password)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with running_registry(d, "127.0.0.1", port, cert, key, d / "htpasswd") as url:
        yield url, f"127.0.0.1:{port}", ca
