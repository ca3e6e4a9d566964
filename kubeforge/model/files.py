"""A file kubeforge means to place on a host: bytes plus where and how."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RenderedFile:
    path: str  # absolute remote path
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # keys, tokens: mode 0600, content never printed or logged
    source: str = ""  # the template or generator that made it, for plan output

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)

    def __repr__(self) -> str:  # never show content
        return f"RenderedFile({self.path!r}, {len(self.content)} bytes, mode={self.mode:o}, secret={self.secret})"


@dataclass(frozen=True)
class LocalFile:
    """A file on the operator's machine to place on a host as it is (an offline bundle's .deb):
    streamed from ``local`` when pushed, never held in memory whole. ``sha256`` and ``size`` were
    checked against the file when it was chosen; the transport checks the copy on the host."""

    path: str  # absolute remote path
    local: Path
    sha256: str
    size: int
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    source: str = ""
    secret = False  # never a secret: bundles hold packages


def file_sha256(path: Path) -> str:
    """sha256 of a local file, read in 1 MiB pieces (bundles and archives can be large)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
