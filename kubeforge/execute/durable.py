"""Writes that survive a crash or a power cut of the operator's machine: the data is fsync'd, and
so is the directory entry that makes a new file (or a rename) visible. Without the second fsync a
journal line can be on disk in a file that, after the crash, is not in its directory at all."""

from __future__ import annotations

import os
from pathlib import Path

from kubeforge.model.files import private_dir


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    """``mkdir`` (0700 whatever the umask, parents as needed, the directory must be new; an unsafe
    parent refused by ``private_dir``) with every new directory entry made durable."""
    path = Path(path).absolute()
    missing = [d for d in (*reversed(path.parents), path) if not d.exists()]
    private_dir(path, exist_ok=False)
    for d in missing:
        fsync_dir(d.parent)


def append_line(path: Path, line: bytes) -> None:
    """Append one record; a file this call creates has its directory entry fsync'd too."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        new = os.fstat(fd).st_size == 0
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(Path(path).parent)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a temp file beside ``path``, fsync it, rename it over ``path``, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
