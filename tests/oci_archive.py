"""Tiny OCI image archives with real names and tags, for bundle tests (no registry is reachable here).

    build_oci_archive(path, "registry.k8s.io/pause:3.10.1")   # -> sha256 of the archive

One layer (a single small file), a config for this machine's architecture, a manifest, and an
index.json naming the image the way `ctr images import` reads it (io.containerd.image.name) and
the way OCI tools do (org.opencontainers.image.ref.name). Deterministic: same ref, same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from pathlib import Path

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


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


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_oci_archive(path: Path, ref: str) -> str:
    """Write an OCI archive of a tiny image named ``ref`` to ``path``; return its sha256 (hex)."""
    layer_tar = _tar({"kubeforge-test-image": f"{ref}\n".encode()})
    layer = gzip.compress(layer_tar, mtime=0)
    arch = _ARCH.get(platform.machine(), platform.machine())
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": ["/kubeforge-test-image"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    tag = ref.rsplit(":", 1)[1]
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest), "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
        }],
    }, sort_keys=True).encode()
    blobs = {f"blobs/sha256/{_digest(b)[7:]}": b for b in (layer, config, manifest)}
    data = _tar({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index, **blobs})
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
