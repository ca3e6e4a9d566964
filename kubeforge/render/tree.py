"""Write rendered files as one tree per host mirroring the remote filesystem (``kubeforge render``).

This is the only module in kubeforge.render that touches the disk; the renderers stay pure.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeforge.model import RenderedFile
from kubeforge.model.files import private_dir
from kubeforge.render.record import RECORD_PATH


@dataclass(frozen=True)
class HostTree:
    host: str
    path: Path
    files: int
    secrets: int
    bytes: int
    removed: int  # files of an earlier render that this one no longer produces


def _write_atomic(target: Path, content: bytes, mode: int) -> None:
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        # mkstemp creates 0600: a secret is never readable by others, not even for a moment.
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def local_mode(f: RenderedFile) -> int:
    """Secrets are 0600 locally whatever their remote mode; other files keep theirs."""
    return 0o600 if f.secret else f.mode


def write_tree(out_dir: Path, rendered: Mapping[str, Sequence[RenderedFile]]) -> list[HostTree]:
    """Write ``out_dir/<host>/<remote path>`` for every file, replacing an earlier render's tree."""
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)  # the trees hold tokens and keys
    summary = []
    for host, files in rendered.items():
        root = out_dir / host
        wanted = {root / f.path.lstrip("/") for f in files}
        removed = 0
        # Only a tree an earlier render wrote (it has our record) is pruned; never a stranger's dir.
        if (root / RECORD_PATH.lstrip("/")).is_file():
            for old in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
                if old not in wanted:
                    old.unlink()
                    removed += 1
        for f in files:
            _write_atomic(root / f.path.lstrip("/"), f.content, local_mode(f))
        summary.append(
            HostTree(
                host=host,
                path=root,
                files=len(files),
                secrets=sum(1 for f in files if f.secret),
                bytes=sum(len(f.content) for f in files),
                removed=removed,
            )
        )
    return summary
