"""A file kubeforge means to place on a host: bytes plus where and how."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


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

    def __repr__(self) -> str:  # never show content
        return f"RenderedFile({self.path!r}, {len(self.content)} bytes, mode={self.mode:o}, secret={self.secret})"
