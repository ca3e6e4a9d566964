"""Paths on the operator's machine written in the inventory: checked as text first, then looked at
only through calls that cannot raise.

``Path.exists()`` raises on a NUL byte (ValueError) or a name too long for the OS (OSError), and
``Path.expanduser()`` on ``~nosuchuser`` (RuntimeError): an inventory value must never reach those.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

# Linux's PATH_MAX and NAME_MAX: longer can never name a file.
MAX_PATH = 4096
MAX_NAME = 255

# (document path, described) of every local path an inventory can hold; hosts are added per index.
SPEC_PATHS: tuple[tuple[str, ...], ...] = (
    ("ssh", "identityFile"),
    ("ssh", "knownHosts"),
    ("ssh", "sshConfig"),
    ("ssh", "bastion", "identityFile"),
    ("etcd", "backup", "directory"),
    ("etcd", "backup", "keyFile"),
    ("packages", "bundleDir"),
    ("images", "ca"),
)
HOST_PATHS: tuple[tuple[str, ...], ...] = (("ssh", "identityFile"),)


def _home_of(user: str) -> str | None:
    try:
        return pwd.getpwnam(user).pw_dir
    except (KeyError, OSError, ValueError):
        return None


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a local file, or None. No file system access."""
    if "\0" in text:
        return "contains a NUL character"
    if not text.strip():
        return "is empty"
    if len(text) > MAX_PATH:
        return f"is {len(text)} characters long; a path has at most {MAX_PATH}"
    long_part = next((part for part in text.split("/") if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME), None)
    if long_part is not None:
        return f"has a name of {len(long_part)} characters; a file name has at most {MAX_NAME} bytes"
    if text.startswith("~") and not text.startswith("~/") and text != "~":
        user = text[1:].split("/", 1)[0]
        if _home_of(user) is None:
            return f"starts with ~{user[:40]}: no such user on this machine"
    return None


def expand(text: str) -> str:
    """``~`` and ``~user`` expanded where that is possible, the text unchanged otherwise."""
    if not text.startswith("~"):
        return text
    head, sep, rest = text[1:].partition("/")
    home = os.path.expanduser("~") if not head else _home_of(head)
    if home is None:
        return text
    return home + (sep + rest if sep else "")


def resolve_path(base_dir: Path, text: str) -> Path:
    """An inventory path: ``~`` expands, relative paths are relative to the inventory's directory."""
    p = Path(expand(text))
    return p if p.is_absolute() else base_dir / p


def _safe(test: Callable[[Path], bool], p: Path) -> bool:
    try:
        return test(p)
    except (OSError, ValueError, RuntimeError):
        return False


def exists(p: Path) -> bool:
    return _safe(Path.exists, p)


def is_file(p: Path) -> bool:
    return _safe(Path.is_file, p)


def is_dir(p: Path) -> bool:
    return _safe(Path.is_dir, p)


def missing(base_dir: Path, text: str, test: Callable[[Path], bool] = exists) -> bool:
    """True when ``text`` is a well-formed path (``path_problem`` reports the others) that does not
    pass ``test``: such paths get a "does not exist" warning, the malformed ones only their error."""
    return path_problem(text) is None and not test(resolve_path(base_dir, text))


def real(p: Path) -> Path:
    """Symlinks resolved where possible; the normalized absolute path otherwise (a loop, an error)."""
    try:
        return p.resolve()
    except (OSError, ValueError, RuntimeError):
        return Path(os.path.normpath(os.path.abspath(p)))
