"""Saved disks of persistent machines: put a lab back to a known state in seconds instead of
rebuilding it (the fault matrix replays hundreds of cases from a handful of states).

    disks.save(lab, "installed")          # machines stopped cleanly, overlay upper dirs copied
    ...
    disks.restore(lab, "installed")       # machines powered off, disks put back, booted again

Only persistent machines have a disk of their own (their overlay upper dir in the lab's state dir);
a volatile machine comes back empty anyway. Saved disks live under the lab's run dir, so
``lab.down()`` removes them with everything else.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.lab.paths import LabError


def _root(lab) -> Path:
    return lab.run_dir / "saved-disks"


def saved(lab, name: str) -> bool:
    return (_root(lab) / name).is_dir()


def _copy(src: Path, dst: Path) -> None:
    # cp -a keeps owners, modes, xattrs and overlayfs whiteouts (character devices 0/0) exactly
    res = subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dst)], capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"copying disk {src} -> {dst} failed: {res.stderr.strip()[-400:]}")


def save(lab, name: str, machines: list[str] | None = None) -> None:
    """Stop ``machines`` (default: every persistent one) cleanly, copy their disks as ``name``, boot them again."""
    names = machines or [n for n, m in lab.machines.items() if m.spec.persistent]
    dest = _root(lab) / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for n in names:
        if not lab.machines[n].spec.persistent:
            raise LabError(f"{n} has a volatile disk; only persistent machines can be saved")
        if lab.running(n):
            lab.shutdown_machine(n)
        _copy(lab.run_dir / "machines" / n / "upper", dest / n)
    lab.start_machines(names)


def restore(lab, name: str, machines: list[str] | None = None) -> None:
    """Power ``machines`` off (no clean shutdown: what they ran since is thrown away), put the disks
    saved as ``name`` back, and boot them."""
    src = _root(lab) / name
    if not src.is_dir():
        raise LabError(f"no saved disks {name!r} in lab {lab.id.name}")
    names = machines or sorted(p.name for p in src.iterdir())
    for n in names:
        if lab.running(n):
            lab.stop_machine(n)

    def put_back(n: str) -> None:
        mdir = lab.run_dir / "machines" / n
        for d in ("upper", "work"):
            shutil.rmtree(mdir / d, ignore_errors=True)
        _copy(src / n, mdir / "upper")

    # the copies in parallel (a Kubernetes node's disk is about 190 MB of small files), then one boot
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(put_back, names))
    lab.start_machines(names)
