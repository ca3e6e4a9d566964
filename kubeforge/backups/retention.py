"""Backup manifests and retention. A backup counts only when its manifest says it was verified."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class BackupManifest:
    name: str  # base name: <cluster>-<UTC time>-rev<revision>
    cluster: str
    created: str  # ISO 8601 UTC
    member: str
    etcd_version: str
    revision: int
    total_keys: int
    snapshot_hash: int
    size: int  # bytes of the plain snapshot
    sha256: str  # of the plain snapshot
    file: str  # the file holding the snapshot (encrypted or not), relative to the manifest
    file_sha256: str  # of that file as stored
    encrypted: bool
    encryption: str = "none"  # none | keyfile | passphrase
    pki_bundle: str | None = None
    verified: bool = False
    verification: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)


def write_manifest(directory: Path, manifest: BackupManifest) -> Path:
    path = directory / (manifest.name + MANIFEST_SUFFIX)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(manifest.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_manifest(path: Path) -> BackupManifest:
    return BackupManifest(**json.loads(path.read_text()))


def list_backups(directory: Path) -> list[BackupManifest]:
    """Every manifest in the directory, newest first (unreadable manifests are skipped)."""
    out: list[BackupManifest] = []
    if not directory.is_dir():
        return out
    for p in directory.glob("*" + MANIFEST_SUFFIX):
        try:
            out.append(read_manifest(p))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda m: m.created, reverse=True)


def plan_retention(
    backups: list[BackupManifest], *, keep: int, max_age_days: int | None, now: datetime | None = None
) -> list[BackupManifest]:
    """Which verified backups to delete: beyond the newest ``keep``, or older than ``max_age_days``.

    The newest verified backup is never deleted, whatever the settings. Unverified backups are not
    touched here (they live in failed/ and are the operator's to inspect).
    """
    now = now or datetime.now(UTC)
    verified = [b for b in backups if b.verified]
    verified.sort(key=lambda m: m.created, reverse=True)
    doomed = []
    for i, b in enumerate(verified):
        if i == 0:
            continue
        too_many = keep > 0 and i >= keep
        too_old = max_age_days is not None and now - b.created_at > timedelta(days=max_age_days)
        if too_many or too_old:
            doomed.append(b)
    return doomed


def delete_backup(directory: Path, manifest: BackupManifest) -> None:
    for name in (manifest.file, manifest.pki_bundle):
        if name:
            (directory / name).unlink(missing_ok=True)
    (directory / (manifest.name + MANIFEST_SUFFIX)).unlink(missing_ok=True)
