"""Remove every leftover of every lab on this runner: processes recorded in state files (only when
PID and start time still match), overlay mounts, bridges named kfnbr*, run directories."""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.lab import claims, network
from tests.lab.lab import teardown_state
from tests.lab.machine import machine_cgroups, remove_cgroups
from tests.lab.paths import RUN_DIR, LabId
from tests.lab.procs import Proc


def _kept(state: dict) -> bool:
    """A lab booted by hand (no owner) whose machines still run is in use, not left over; a lab whose
    owner process is alive is in use too."""
    owner = Proc.from_json(state.get("owner"))
    if owner is not None:
        return owner.alive()
    recs = [m.get("proc") for m in state.get("machines", [])]
    return any(p and p.alive() for p in map(Proc.from_json, recs))


def down_all(log=print, force: bool = False, only: set[str] | None = None) -> list[str]:
    """Everything left over. A lab whose lock is held belongs to a running pytest session elsewhere
    on this runner and is left alone unless ``force``. ``only`` limits the sweep to those labs."""
    removed: list[str] = []
    busy: set[str] = set()
    locked: set[str] = set()
    kept: set[str] = set()
    if only is not None:  # everything outside ``only`` counts as in use
        busy |= {p.name for p in RUN_DIR.glob("lab*") if p.is_dir() and p.name not in only}
        busy |= {f"lab{b[len('kfnbr'):]}" for b in network.lab_bridges() if f"lab{b[len('kfnbr'):]}" not in only}
    locks: list[int] = []
    for lock in sorted(RUN_DIR.glob("lab*.lock")):
        if only is not None and lock.stem not in only:
            continue
        index = int(lock.stem[3:]) if lock.stem[3:].isdigit() else None
        fd = claims.try_lock(index) if index is not None else None
        if index is not None and fd is None and not force:
            busy.add(lock.stem)
            locked.add(lock.stem)
        locks.append(fd)
    for state_file in sorted(RUN_DIR.glob("*/state.json")):
        if state_file.parent.name in busy:
            continue
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state is not None and not force and _kept(state):
            busy.add(state_file.parent.name)
            kept.add(state_file.parent.name)
            continue
        if state is not None:
            teardown_state(state, log=log)
            removed.append(state_file.parent.name)
    # overlays from a run whose state file was lost
    with open("/proc/self/mounts") as f:
        stale = [
            mnt for mnt in (line.split()[1] for line in f)
            if mnt.startswith(str(RUN_DIR) + "/") and mnt[len(str(RUN_DIR)) + 1 :].split("/")[0] not in busy
        ]
    for mnt in sorted(stale, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        removed.append(mnt)
    busy_units = {f"kfn{name[3:]}-" for name in busy}
    for parent in {p.parent for p in machine_cgroups("x")}:
        for unit in sorted(d.name for d in parent.glob("kfn*-*") if d.is_dir()):
            if not any(unit.startswith(prefix) for prefix in busy_units):
                remove_cgroups(unit)
    busy_bridges = {LabId(int(name[3:])).bridge for name in busy}
    for bridge in network.lab_bridges():
        if bridge not in busy_bridges:
            network.delete_bridge(bridge)
            removed.append(bridge)
    if RUN_DIR.exists():
        for d in RUN_DIR.iterdir():
            if d.is_dir() and d.name not in busy:
                shutil.rmtree(d, ignore_errors=True)
    for fd in locks:
        claims.release(fd)
    if locked:
        log(f"left alone (in use by a running session): {', '.join(sorted(locked))}; --force removes them too")
    if kept:
        log(f"left alone (booted by hand, machines running): {', '.join(sorted(kept))}; "
            "stop with 'python -m tests.lab --index N down', or --force")
    return removed


def leftovers() -> dict[str, list[str]]:
    """What a clean runner must not have: lab bridges, live recorded processes, run directories."""
    live: list[str] = []
    for state_file in RUN_DIR.glob("*/state.json"):
        try:
            st = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        for rec in [m.get("proc") for m in st.get("machines", [])] + [st.get("mirror")]:
            p = Proc.from_json(rec)
            if p and p.alive():
                live.append(str(p.pid))
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(str(RUN_DIR) + "/")]
    return {
        "bridges": network.lab_bridges(),
        "processes": live,
        "mounts": mounts,
        "run_dirs": sorted(p.name for p in RUN_DIR.iterdir()) if RUN_DIR.exists() else [],
    }
