"""The operator's side of etcd backups, below the workflows: the file a backup is stored in (0600
from creation, hashed as stored, encrypted on the way in), the PKI bundle beside it, and the
verified read a restore starts from. Snapshot files are kubeforge.backups.snapshot's; manifests and
retention kubeforge.backups.retention's; the workflow that takes a backup is
kubeforge.workflows.etcd.backup."""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from kubeforge.backups.retention import BackupManifest, read_manifest
from kubeforge.backups.snapshot import SnapshotInvalid, verify_integrity_bytes
from kubeforge.errors import InputError
from kubeforge.model.files import file_sha256
from kubeforge.model.secret import Secret
from kubeforge.pki import backup_crypto as crypto


@dataclass(frozen=True)
class BackupOptions:
    directory: Path
    keep: int
    max_age_days: int | None
    encryption: str = "none"  # none | keyfile | passphrase
    key: bytes | None = None
    passphrase: Secret | None = None
    include_pki: bool = True


class HashedFile:
    def __init__(self, f) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class StoredFile:
    """The file a backup is written to: 0600 from creation, hashed as stored, and encrypted on the
    way in when ``opts`` asks for it; ``write`` takes plaintext. ``abandon`` removes it."""

    def __init__(self, path: Path, opts: BackupOptions) -> None:
        self.path = path
        self._out = HashedFile(crypto.open_private(path))
        self._encryptor = (crypto.Encryptor(self._out, key=opts.key, passphrase=opts.passphrase)
                           if opts.encryption != "none" else None)

    def write(self, data: bytes) -> int:
        return (self._encryptor or self._out).write(data)

    def finish(self) -> str:
        """Tag, fsync and close; the sha256 of the file as stored."""
        if self._encryptor is not None:
            self._encryptor.close()
        self._out.f.flush()
        os.fsync(self._out.f.fileno())
        self._out.f.close()
        return self._out.hash.hexdigest()

    def abandon(self) -> None:
        self._out.f.close()
        self.path.unlink(missing_ok=True)


def pki_bundle(pki_dir: Path, dst: Path, opts: BackupOptions) -> None:
    """The local PKI a restore onto new machines needs (etcd + Kubernetes CAs and keys), 0600,
    packed straight into the (encrypting) file: the tarball never exists in plain, on disk or whole
    in memory."""
    tmp = dst.with_name(dst.name + ".part")
    out = StoredFile(tmp, opts)
    try:
        # stream mode "w|gz" only calls write(); typeshed's _Fileobj asks for a whole file object
        with tarfile.open(fileobj=out, mode="w|gz") as tar:  # type: ignore[call-overload]
            tar.add(pki_dir, arcname="pki")
        out.finish()
    except BaseException:
        out.abandon()
        raise
    os.replace(tmp, dst)


def read_verified_snapshot(manifest_path: Path, *, key: bytes | None = None,
                           passphrase: Secret | None = None) -> tuple[BackupManifest, bytes]:
    """Re-check a stored backup before it is used: manifest verified, file checksum, decryption
    (authenticated), the plain snapshot's sha256 and etcd's integrity trailer.

    Returns the manifest and the plain snapshot, in memory only: an encrypted backup is never
    written out in plain on the operator's machine, not even while it is restored.
    """
    try:
        manifest = read_manifest(manifest_path)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{manifest_path}: not a kubeforge backup manifest ({exc})") from None
    if not manifest.verified:
        raise InputError(f"{manifest_path}: this backup never passed verification; refusing to use it")
    snap = manifest_path.parent / manifest.file
    if not snap.is_file():
        raise InputError(f"{snap}: the snapshot file named in the manifest is missing")
    actual = file_sha256(snap)
    if actual != manifest.file_sha256:
        raise InputError(f"{snap}: checksum {actual[:12]}… does not match the manifest's {manifest.file_sha256[:12]}…")
    if manifest.encrypted:
        data = crypto.decrypt_bytes(snap, key=key, passphrase=passphrase)
        if hashlib.sha256(data).hexdigest() != manifest.sha256:
            raise InputError(f"{snap}: decrypted snapshot does not match the manifest's checksum")
    else:
        data = snap.read_bytes()
    try:
        verify_integrity_bytes(data, snap.name)
    except SnapshotInvalid as exc:
        raise InputError(str(exc)) from None
    return manifest, data
