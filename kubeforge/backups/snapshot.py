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




class IntegrityCheck:
    """etcd's trailer check on a stream: ``feed`` chunks as they arrive, then ``check``.

    Keeps back the last 32 bytes seen (the trailer candidate) and hashes everything before them,
    so a snapshot is verified while it downloads and never has to be read back from disk.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 0
        self._hash = hashlib.sha256()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        data = self._tail + chunk if self._tail else chunk
        if len(data) > _TRAILER:
            self._hash.update(memoryview(data)[: len(data) - _TRAILER])
            self._tail = bytes(data[-_TRAILER:])
        else:
            self._tail = bytes(data)

    def check(self) -> None:
        """Raise SnapshotInvalid unless the trailer is the sha256 of everything before it."""
        if self.size <= _TRAILER + 4096:
            raise SnapshotInvalid(f"{self.name}: {self.size} bytes is too small to be an etcd snapshot")
        if self._hash.digest() != self._tail:
            raise SnapshotInvalid(f"{self.name}: integrity hash does not match its content (corrupted or truncated)")


def verify_integrity(path: Path) -> None:
    """Raise SnapshotInvalid unless the file's trailer is the sha256 of everything before it."""
    check = IntegrityCheck(path.name)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            check.feed(chunk)
    check.check()


def verify_integrity_bytes(data: bytes, name: str) -> None:
    check = IntegrityCheck(name)
    check.feed(data)
    check.check()


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
