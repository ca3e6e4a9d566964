"""Container images, asked for the way kubeadm and the kubelet ask containerd (CRI) for them.

An image is usable when containerd's ``k8s.io`` namespace holds it (``ctr -n k8s.io images ls -q``),
or when it can be pulled the way containerd's CRI pulls (containerd docs/hosts.md):

- the image's registry host has ``/etc/containerd/certs.d/<host>/hosts.toml``: each ``[host."URL"]``
  with the pull capability is tried in order, then ``server``; each with its own ``ca`` and
  ``[header]`` (kubeforge writes the basic-auth ``Authorization`` there). Without a hosts.toml the
  registry itself (``https://<host>``; Docker Hub at registry-1.docker.io) is the only endpoint;
- a real endpoint is asked over HTTP(S) with the registry v2 API (manifest, then config and layer
  blobs, each checked against its digest), and the result is imported with ``ctr -n k8s.io images
  import``, as a pull leaves it;
- an endpoint on a public registry (registry.k8s.io, Docker Hub, ghcr.io, quay.io, ...) is never
  contacted from a test: the simulator stands in for it. It answers only on a machine with a
  default route (no route: containerd's dial fails with "network is unreachable", as on an
  air-gapped machine), and only for images that exist there: kubeadm's images of the Kubernetes
  minors in kubeforge's version data and the images kubeforge itself names (images.json, built by
  tests/sim/image_catalog.py; never a list here). What it serves is a tiny OCI image with the real
  name and tag (``build_archive``, the same builder the bundle tests use).

kubeadm's preflight (init, join --control-plane, upgrade apply) "pulls" its whole list first and
fails with ``[ERROR ImagePull]: failed to pull image <ref>: <why>``; the kubelet never starts a static
pod whose image it cannot have (ErrImagePull, then ImagePullBackOff: 10 s doubling to 300 s).

In-process test machines (tests/sim/testing.py) have no containerd, only a socket that accepts
connections; theirs is the file ``TEST_STORE`` listing the images present (``FileStore``). Every
machine in the lab and the rule tests use the real containerd.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from functools import cache
from urllib.parse import urlparse

from . import host

DEFAULT_REPOSITORY = "registry.k8s.io"
CERTS_DIR = "/etc/containerd/certs.d"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
NAMESPACE = "k8s.io"
TEST_STORE = "/var/lib/kubesim/test-images.json"
CATALOG_FILE = "images.json"
# Registries on the internet: the simulator answers for them instead of contacting them.
PUBLIC_REGISTRIES = frozenset({"registry.k8s.io", "docker.io", "registry-1.docker.io", "ghcr.io", "quay.io",
                               "gcr.io", "k8s.gcr.io", "public.ecr.aws", "mcr.microsoft.com"})
_SERVERS = {"docker.io": "https://registry-1.docker.io"}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_ACCEPT = ", ".join([_OCI_MANIFEST, _OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                     "application/vnd.docker.distribution.manifest.list.v2+json"])
CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


class PullError(Exception):
    pass


# ---- what exists upstream, and kubeadm's list -------------------------------------------------------

@cache
def catalog() -> dict:
    """images.json beside this module: written by tests/sim/image_catalog.py from kubeforge's version data
    (build_debs writes it into every package; the source tree's copy is checked against the data by
    tests/unit/test_sim_images.py)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), CATALOG_FILE), encoding="utf-8") as f:
        return json.load(f)


def _minor(version: str) -> dict:
    major, minor, _ = host.parse_version(version)
    facts = catalog()["minors"].get(f"{major}.{minor}")
    if facts is None:
        raise host.SimError(f"this version of kubeadm knows no images for Kubernetes {version}")
    return facts


def _in(repository: str, upstream: str) -> str:
    """``registry.k8s.io/x:t`` in ``repository``, as kubeadm's imageRepository places it."""
    return upstream if repository == DEFAULT_REPOSITORY else f"{repository}/{upstream.split('/', 1)[1]}"


def etcd_image(version: str, repository: str = DEFAULT_REPOSITORY) -> str:
    return f"{repository}/etcd:{_minor(version)['etcd']}"


def kubeadm_images(version: str, repository: str = DEFAULT_REPOSITORY, local_etcd: bool = True) -> list[str]:
    """`kubeadm config images list` for ``version`` (kubeadm's images.GetControlPlaneImages): CoreDNS
    drops its ``coredns/`` sub-path outside registry.k8s.io (GetDNSImage)."""
    facts = _minor(version)
    v = host.vstr(host.parse_version(version))
    out = [f"{repository}/{c}:{v}" for c in CONTROL_PLANE_COMPONENTS]
    dns = "coredns/coredns" if repository == DEFAULT_REPOSITORY else "coredns"
    out += [f"{repository}/{dns}:{facts['coredns']}", _in(repository, facts["pause"])]
    if local_etcd:
        out.append(etcd_image(version, repository))
    return out


def exists_upstream(ref: str) -> bool:
    name, _, tag = ref.rpartition(":")
    cat = catalog()
    if tag in cat["own"].get(name, ()):
        return True
    minors = cat["minors"]
    component = name.removeprefix(DEFAULT_REPOSITORY + "/")
    if component in CONTROL_PLANE_COMPONENTS and name != component:
        try:
            major, minor, _ = host.parse_version(tag)
        except host.SimError:
            return False
        return tag.startswith("v") and f"{major}.{minor}" in minors
    return any(ref in (f"{DEFAULT_REPOSITORY}/etcd:{m['etcd']}", f"{DEFAULT_REPOSITORY}/coredns/coredns:{m['coredns']}",
                       m["pause"]) for m in minors.values())


def split(ref: str) -> tuple[str, str, str]:
    """(registry host, repository path, tag) as containerd's reference parser splits a name."""
    name, _, tag = ref.rpartition(":")
    if "/" in tag or not name:
        name, tag = ref, "latest"
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "docker.io", name if "/" in name else f"library/{name}", tag


def default_route() -> bool:
    """A default route in this machine's network namespace (IPv4 or IPv6)."""
    for path, is_default in (("/proc/net/route", lambda f: len(f) > 7 and f[1] == "00000000" and f[7] == "00000000"),
                             ("/proc/net/ipv6_route", lambda f: len(f) > 1 and f[0] == "0" * 32 and f[1] == "00")):
        try:
            lines = host.read(path).splitlines()
        except OSError:
            continue
        if any(is_default(line.split()) for line in lines[1 if path.endswith("/route") else 0:]):
            return True
    return False


# ---- the archive: what a pull leaves behind -------------------------------------------------------------

def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def archive(ref: str, manifest: bytes, blobs: list[bytes], platform_: dict | None = None,
            media_type: str = _OCI_MANIFEST) -> bytes:
    """An OCI archive of one image: what `ctr images export` writes and `ctr images import` reads
    (io.containerd.image.name), with the OCI ref annotation too."""
    desc = {"mediaType": media_type, "digest": digest(manifest), "size": len(manifest),
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}}
    if platform_:
        desc["platform"] = platform_
    index = json.dumps({"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": [desc]}, sort_keys=True).encode()
    entries = {f"blobs/sha256/{digest(b)[7:]}": b for b in [*blobs, manifest]}
    return _tar({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index, **entries})


def image_parts(ref: str) -> tuple[bytes, list[bytes], dict]:
    """A tiny image named ``ref`` for this machine's architecture: (manifest, [config, layer], platform).
    Deterministic: same ref, same bytes."""
    layer_tar = _tar({"kubeforge-test-image": f"{ref}\n".encode()})
    layer = gzip.compress(layer_tar, mtime=0)
    arch = _ARCH.get(platform.machine(), platform.machine())
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Entrypoint": ["/kubeforge-test-image"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]}}, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": _OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    return manifest, [layer, config], {"architecture": arch, "os": "linux"}


def build_archive(ref: str) -> bytes:
    manifest, blobs, plat = image_parts(ref)
    return archive(ref, manifest, blobs, plat)


def archive_refs(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        member = t.extractfile("index.json")
        index = json.loads(member.read()) if member else {}
    return [m.get("annotations", {}).get("io.containerd.image.name", "") for m in index.get("manifests", [])]


# ---- containerd's image store ------------------------------------------------------------------------------

class CtrStore:
    """containerd's k8s.io namespace, through ctr on the machine's containerd socket."""

    def __init__(self, address: str) -> None:
        self.address = address

    def _ctr(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", self.address, "-n", NAMESPACE, *argv], capture_output=True,
                              text=True, timeout=120)

    def refs(self) -> list[str]:
        res = self._ctr("images", "ls", "-q")
        if res.returncode != 0:
            raise PullError(f"rpc error: code = Unavailable desc = {res.stderr.strip()}")
        return res.stdout.split()

    def has(self, ref: str) -> bool:
        return ref in self.refs()

    def add(self, data: bytes, ref: str) -> None:
        with tempfile.NamedTemporaryFile(prefix="kubesim-pull-", suffix=".tar") as f:
            f.write(data)
            f.flush()
            res = self._ctr("images", "import", f.name)
        if res.returncode != 0:
            raise PullError(f"failed to unpack image {ref!r}: {res.stderr.strip()}")


class FileStore:
    """An in-process test machine's image list (it has no containerd)."""

    def refs(self) -> list[str]:
        return json.loads(host.read(TEST_STORE)) if host.exists(TEST_STORE) else []

    def has(self, ref: str) -> bool:
        return ref in self.refs()

    def add(self, data: bytes, ref: str) -> None:
        host.write(TEST_STORE, json.dumps(sorted({*self.refs(), *archive_refs(data)})))


def store() -> CtrStore | FileStore:
    return FileStore() if host.exists(TEST_STORE) else CtrStore(host.path(CONTAINERD_SOCKET))


# ---- pulling -----------------------------------------------------------------------------------------------

def endpoints(registry: str) -> list[tuple[str, str | None, dict[str, str], bool]]:
    """(url, CA file, headers, is_mirror) in containerd's order for ``registry``."""
    import tomllib

    server = _SERVERS.get(registry, f"https://{registry}")
    path = f"{CERTS_DIR}/{registry}/hosts.toml"
    if not host.exists(path):
        return [(server, None, {}, False)]
    try:
        doc = tomllib.loads(host.read(path))
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise PullError(f"failed to load {path}: {e}") from None

    def ca_of(d: dict) -> str | None:
        ca = d.get("ca")
        return (ca[0] if ca else None) if isinstance(ca, list) else ca

    out = [(url, ca_of(h), dict(h.get("header") or {}), True) for url, h in (doc.get("host") or {}).items()
           if "pull" in h.get("capabilities", ["pull"])]
    return [*out, (doc.get("server") or server, ca_of(doc), dict(doc.get("header") or {}), False)]


def _get(url: str, headers: dict[str, str], ca: str | None, accept: str | None = None) -> tuple[bytes, str]:
    ctx = ssl.create_default_context(cafile=host.path(ca) if ca else None) if url.startswith("https") else None
    req = urllib.request.Request(url, headers={**headers, **({"Accept": accept} if accept else {})})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status = "not found" if e.code == 404 else f"unexpected status from GET request to {url}: {e.code} {e.reason}"
        raise PullError(status) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PullError(f'failed to do request: Get "{url}": {reason}') from None


def _fetch(base: str, repo: str, tag: str, ref: str, ca: str | None, headers: dict[str, str], mirror_of: str | None) -> bytes:
    base = base.rstrip("/")
    api = base if urlparse(base).path else f"{base}/v2"
    ns = f"?ns={mirror_of}" if mirror_of else ""
    body, ctype = _get(f"{api}/{repo}/manifests/{tag}{ns}", headers, ca, _ACCEPT)
    doc = json.loads(body)
    media = doc.get("mediaType") or ctype.split(";")[0]
    plat = None
    if "index" in media or "list" in media:
        arch = _ARCH.get(platform.machine(), platform.machine())
        pick = next((m for m in doc.get("manifests", []) if (m.get("platform") or {}).get("architecture") == arch
                     and (m.get("platform") or {}).get("os") == "linux"), None)
        if pick is None:
            raise PullError(f"no match for platform in manifest: not found (linux/{arch})")
        body, ctype = _get(f"{api}/{repo}/manifests/{pick['digest']}{ns}", headers, ca, _ACCEPT)
        doc, plat = json.loads(body), pick.get("platform")
        media = doc.get("mediaType") or ctype.split(";")[0]
    blobs = []
    for d in [doc["config"], *doc.get("layers", [])]:
        blob, _ = _get(f"{api}/{repo}/blobs/{d['digest']}{ns}", headers, ca)
        if digest(blob) != d["digest"]:
            raise PullError(f"failed commit on ref \"layer-{d['digest']}\": unexpected commit digest {digest(blob)}, "
                            f"expected {d['digest']}: failed precondition")
        blobs.append(blob)
    return archive(ref, body, blobs, plat, media)


def pull(ref: str) -> bytes:
    """The OCI archive a pull of ``ref`` yields, from the first endpoint that serves it."""
    registry, repo, tag = split(ref)
    why = "no endpoint"
    for url, ca, headers, is_mirror in endpoints(registry):
        where = urlparse(url).hostname or ""
        try:
            if where in PUBLIC_REGISTRIES:
                if not default_route():
                    raise PullError(f'failed to do request: Head "{url.rstrip("/")}/v2/{repo}/manifests/{tag}": dial tcp: '
                                    f"lookup {where}: connect: network is unreachable")
                if not exists_upstream(ref):
                    raise PullError(f"{ref}: not found")
                return build_archive(ref)
            return _fetch(url, repo, tag, ref, ca, headers, registry if is_mirror else None)
        except PullError as e:
            why = str(e)
    raise PullError(f'rpc error: code = Unknown desc = failed to pull and unpack image "{ref}": '
                    f'failed to resolve reference "{ref}": {why}')


def ensure(ref: str, present: list[str] | None = None) -> bool:
    """Make ``ref`` present in containerd, pulling it if needed; True when it was pulled now.
    ``present``: what containerd listed just before. PullError says why it cannot be had."""
    s = store()
    if ref in (s.refs() if present is None else present):
        return False
    s.add(pull(ref), ref)
    return True


def pull_checks(refs: list[str]) -> list[tuple[str, str | None]]:
    """kubeadm's ImagePull preflight check (preflight.ImagePullCheck): one entry per image that fails."""
    try:
        present: list[str] | None = store().refs()
    except PullError:
        present = None  # each image's own attempt then fails with containerd's answer
    out: list[tuple[str, str | None]] = []
    for ref in refs:
        try:
            ensure(ref, present)
        except PullError as e:
            out.append(("ImagePull", f"failed to pull image {ref}: {e}"))
    return out


STARTED = "/run/kubesim/images-started"


class PodImages:
    """The kubelet's side: a static pod runs only once its image is present (imagePullPolicy
    IfNotPresent); a failed pull is logged as ErrImagePull and retried with the kubelet's back-off.
    Images a container was started from in this boot are remembered in /run (tmpfs, as containers
    are): a restarted kubelet finds those containers and does not ask containerd again, even while
    containerd is down."""

    def __init__(self, log) -> None:
        self.log = log
        self.present: set[str] = set(host.read(STARTED).split()) if host.exists(STARTED) else set()
        self.backoff: dict[str, tuple[float, float]] = {}  # ref -> (next try, current delay)

    def runnable(self, pod: dict | None) -> dict | None:
        if pod is None:
            return None
        try:
            ref = pod["spec"]["containers"][0]["image"]
        except (KeyError, IndexError, TypeError):
            return pod
        if ref in self.present:
            return pod
        next_try, delay = self.backoff.get(ref, (0.0, 5.0))
        if time.time() < next_try:
            return None
        name = (pod.get("metadata") or {}).get("name", "?")
        try:
            ensure(ref)
        except PullError as e:
            delay = min(delay * 2, 300.0)
            self.backoff[ref] = (time.time() + delay, delay)
            self.log(f'E "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"{name}\\" with '
                     f'ErrImagePull: \\"{e}\\"" pod="kube-system/{name}"')
            return None
        self.present.add(ref)
        self.backoff.pop(ref, None)
        host.write(STARTED, "\n".join(sorted(self.present)) + "\n")
        return pod
