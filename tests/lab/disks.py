"""Saved disks of persistent machines: put a lab back to a known state in seconds instead of
rebuilding it (the fault matrix replays hundreds of cases from a handful of states).

    disks.save(lab, "installed")          # machines stopped cleanly, their upper dirs kept as layers
    ...
    disks.restore(lab, "installed")       # machines powered off, booted on those layers again

Only persistent machines have a disk of their own: an overlay whose upper dir is in the lab's state
dir, over the shared root filesystem. Nothing is copied either way:

- **save** moves each machine's upper dir (what it changed since its last save or restore) into
  ``saved-disks/layers/`` as a read-only layer, and writes ``saved-disks/<name>/<machine>``: the
  machine's layers, top first -- that new one, then the layers it was itself running on (its
  parents). The machine boots again on that stack with an empty upper dir: exactly the state saved.
- **restore** throws a machine's upper dir away and boots it with an empty one over the layers
  ``<name>`` lists, so the mount is ``lowerdir=<layer>:<parent>:...:<rootfs>``.

A layer is never changed or deleted once written (only ``lab.down()`` removes them, with the run
dir): a name saved again gets new layers and points at them, so states saved on top of the old ones
keep theirs. The overlay's whiteouts (character devices 0/0) and opaque directories in a layer hide
the files below it as they did in the upper dir it was.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.lab import machine as mach
from tests.lab.paths import LabError


def _root(lab) -> Path:
    return lab.run_dir / "saved-disks"


def _mdir(lab, name: str) -> Path:
    return lab.run_dir / "machines" / name


def saved(lab, name: str) -> bool:
    return (_root(lab) / name).is_dir()


def layers(lab, name: str, machine: str) -> list[Path]:
    """The layers of ``machine``'s disk saved as ``name``, top first (the root filesystem not included)."""
    return [Path(line) for line in (_root(lab) / name / machine).read_text().splitlines() if line]


def _new_layer(lab, machine: str, name: str) -> Path:
    d = _root(lab) / "layers"
    d.mkdir(parents=True, exist_ok=True)
    i = 1
    while (d / f"{machine}.{name}.{i}").exists():
        i += 1
    return d / f"{machine}.{name}.{i}"


def save(lab, name: str, machines: list[str] | None = None) -> None:
    """Stop ``machines`` (default: every persistent one) cleanly, keep their disks as ``name``, boot them again."""
    names = machines or [n for n, m in lab.machines.items() if m.spec.persistent]
    volatile = [n for n in names if not lab.machines[n].spec.persistent]
    if volatile:
        raise LabError(f"{', '.join(volatile)}: volatile disk; only persistent machines can be saved")
    dest = _root(lab) / name
    shutil.rmtree(dest, ignore_errors=True)  # only the list: the layers it named stay for whoever stacks on them
    dest.mkdir(parents=True)
    for n in names:
        if lab.running(n):
            lab.shutdown_machine(n)
        mdir = _mdir(lab, n)
        mach.unmount_overlay(mdir)  # a machine that ended by itself may still have its disk mounted
        layer = _new_layer(lab, n, name)
        if (mdir / "upper").is_dir():
            os.rename(mdir / "upper", layer)
        else:
            layer.mkdir()
        shutil.rmtree(mdir / "work", ignore_errors=True)  # it belonged to the upper dir just moved
        stack = [layer, *mach.lower_layers(mdir)]
        (dest / n).write_text("".join(f"{p}\n" for p in stack))
        mach.set_lower_layers(mdir, stack)
    lab.start_machines(names)


def restore(lab, name: str, machines: list[str] | None = None) -> None:
    """Power ``machines`` off (no clean shutdown: what they ran since is thrown away), boot them on
    the layers saved as ``name`` with empty upper dirs."""
    src = _root(lab) / name
    if not src.is_dir():
        raise LabError(f"no saved disks {name!r} in lab {lab.id.name}")
    names = machines or sorted(p.name for p in src.iterdir())
    for n in names:
        if lab.running(n):
            lab.stop_machine(n)

    def put_back(n: str) -> None:
        mdir = _mdir(lab, n)
        mach.unmount_overlay(mdir)
        for d in ("upper", "work"):
            shutil.rmtree(mdir / d, ignore_errors=True)
        mach.set_lower_layers(mdir, layers(lab, name, n))

    # what the machines wrote since is deleted in parallel (a case's upgrade leaves tens of MB), then one boot
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(put_back, names))
    lab.start_machines(names)
