"""The local PKI directory: atomic writes with the right modes, reads that name the bad file."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from kubeforge.errors import InputError
from kubeforge.model.files import private_dir

DIR_MODE = 0o700
KEY_MODE = 0o600
CERT_MODE = 0o644

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PkiStoreError(InputError):
    """The local PKI store is missing, incomplete or unreadable; the message names the file."""


def safe_component(name: str) -> str:
    """A host name used as a directory name; refuses anything that could leave the store."""
    if not _SAFE_NAME.match(name):
        raise PkiStoreError(f"host name {name!r} cannot be used as a directory in the PKI store")
    return name


class Store:
    """Files under one root; every directory is 0700, keys 0600, certificates 0644."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def ensure_dir(self, rel: str = "") -> None:
        d = self.path(rel) if rel else self.root
        private_dir(d)
        # mkdir's mode is filtered by the umask and ignored for existing directories: tighten them all.
        cur = d
        while True:
            if (cur.stat().st_mode & 0o777) != DIR_MODE:
                os.chmod(cur, DIR_MODE)
            if cur == self.root or self.root not in cur.parents:
                break
            cur = cur.parent

    def read(self, rel: str, *, secret: bool | None = None) -> bytes:
        p = self.path(rel)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise PkiStoreError(f"{p}: cannot read ({exc.strerror})") from None
        if secret is None:
            secret = rel.endswith(".key")
        if secret and (p.stat().st_mode & 0o077):
            os.chmod(p, KEY_MODE)  # a key readable by others is tightened, never left as found
        return data

    def write_many(self, files: dict[str, tuple[bytes, int]]) -> None:
        """Write several files (rel -> (content, mode)) each atomically; renames happen last, together,
        so an interruption leaves at most a tiny window with a key but no certificate."""
        staged: list[tuple[str, Path]] = []
        try:
            for rel, (content, mode) in files.items():
                target = self.path(rel)
                self.ensure_dir(str(Path(rel).parent) if Path(rel).parent != Path(".") else "")
                fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
                try:
                    os.fchmod(fd, mode)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(content)
                        fh.flush()
                        os.fsync(fh.fileno())
                except BaseException:
                    os.unlink(tmp_name)
                    raise
                staged.append((rel, Path(tmp_name)))
            for rel, tmp in staged:
                os.replace(tmp, self.path(rel))
            staged = []
        finally:
            for _, tmp in staged:
                tmp.unlink(missing_ok=True)
