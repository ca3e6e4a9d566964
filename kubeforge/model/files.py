"""A file kubeforge means to place on a host: bytes plus where and how; and ``private_dir``, the one
way kubeforge creates a directory on the operator's machine (0700, unsafe existing ones refused)."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import InputError


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


# --- directories on the operator's machine ----------------------------------------------------------
PRIVATE_DIR = 0o700
STATE_DIR_NAME = ".kubeforge"


def _checked(d: Path) -> list[Path]:
    """The existing directories whose safety matters for ``d``: ``d`` itself and every ancestor from
    the nearest ``.kubeforge`` down (above it lives the operator's own tree, not ours)."""
    chain = [d, *d.parents]
    for i, p in enumerate(chain):
        if p.name == STATE_DIR_NAME:
            return chain[: i + 1]
    return [d]


def private_dir(path: Path | str, *, exist_ok: bool = True) -> Path:
    """Create ``path`` (and missing parents) 0700 whatever the umask; refuse (InputError, exit 3) when
    it, or a directory of kubeforge's state above it, is writable by group or others or owned by
    another user: whoever can write there could swap pki/ or a backup for their own.

    Outside ``.kubeforge/`` a world-writable directory with the sticky bit (``/tmp``) is accepted, as
    ``ssh`` accepts it: only its owner can replace what is in it.
    """
    d = Path(path).absolute()
    if not exist_ok and d.exists():
        raise FileExistsError(str(d))
    _refuse_unsafe(d)  # before anything is created inside
    missing = []
    p = d
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for m in reversed(missing):
        try:
            m.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if m == d and not exist_ok:
                raise
            _refuse_unsafe(m)  # another process made it meanwhile
        else:
            os.chmod(m, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return d


def _refuse_unsafe(d: Path) -> None:
    for p in _checked(d):
        try:
            st = p.stat()
        except OSError:
            continue  # not there (yet): it will be made 0700
        unsafe = st.st_mode & 0o022
        in_state = STATE_DIR_NAME in p.parts
        if unsafe and not (not in_state and st.st_mode & stat.S_ISVTX):
            who = "group and others" if unsafe == 0o022 else ("others" if unsafe == 0o002 else "its group")
            raise InputError(f"{p} is writable by {who} (mode {st.st_mode & 0o7777:04o}): another local user could "
                             "replace kubeforge's state (keys, certificates, backups) in it; refusing to use it",
                             hint=f"chmod 700 {p}  (and check that nothing in it was changed)")
        if p == d and st.st_uid != os.geteuid() and os.geteuid() != 0:
            raise InputError(f"{p} belongs to another user (uid {st.st_uid}); refusing to keep kubeforge's state in it")
