"""Snapshot files: integrity (the sha256 trailer etcd appends), checksums, `snapshot status` output.

`etcdctl snapshot save` writes the bbolt database followed by a 32-byte sha256 of it; restore
checks that trailer. kubeforge checks it too, locally and without etcd tools, so a corrupted or
truncated download is caught on the operator's machine before it is ever counted as a backup.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1024 * 1024
_TRAILER = 32


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int

    def to_dict(self) -> dict:
        return {"hash": self.hash, "revision": self.revision, "totalKey": self.total_keys, "totalSize": self.total_size}


class SnapshotInvalid(ValueError):
    """The snapshot file is not a complete etcd snapshot."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_integrity(path: Path) -> None:
    """Raise SnapshotInvalid unless the file's trailer is the sha256 of everything before it."""
    size = path.stat().st_size
    if size <= _TRAILER + 4096:
        raise SnapshotInvalid(f"{path.name}: {size} bytes is too small to be an etcd snapshot")
    h = hashlib.sha256()
    remaining = size - _TRAILER
    with open(path, "rb") as f:
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                raise SnapshotInvalid(f"{path.name}: truncated while reading")
            h.update(chunk)
            remaining -= len(chunk)
        trailer = f.read(_TRAILER)
    if h.digest() != trailer:
        raise SnapshotInvalid(f"{path.name}: integrity hash does not match its content (corrupted or truncated)")


def parse_status(text: str) -> SnapshotStatus:
    """Parse `etcdctl snapshot status -w json` / `etcdutl snapshot status -w json`."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"revision"' in line:
            data = json.loads(line)
            return SnapshotStatus(
                hash=int(data["hash"]),
                revision=int(data["revision"]),
                total_keys=int(data["totalKey"]),
                total_size=int(data["totalSize"]),
            )
    raise SnapshotInvalid("snapshot status printed no JSON status")
