"""Tiny OCI image archives with real names and tags, for bundle tests (no registry is reachable here).

    build_oci_archive(path, "registry.k8s.io/pause:3.10.1")   # -> sha256 of the archive

One layer (a single small file), a config for this machine's architecture, a manifest, and an
index.json naming the image the way `ctr images import` reads it (io.containerd.image.name) and
the way OCI tools do (org.opencontainers.image.ref.name). Deterministic: same ref, same bytes. Built by
the simulator's images.py: the same image its stand-in for the public registries serves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.sim.kubesim.images import build_archive


def build_oci_archive(path: Path, ref: str) -> str:
    """Write an OCI archive of a tiny image named ``ref`` to ``path``; return its sha256 (hex)."""
    data = build_archive(ref)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
