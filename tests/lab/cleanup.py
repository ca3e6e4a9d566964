"""Remove every leftover of every lab on this runner: processes recorded in state files (only when
PID and start time still match), overlay mounts, bridges named kfnbr*, run directories."""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.lab import network
from tests.lab.lab import teardown_state
from tests.lab.paths import RUN_DIR


def down_all(log=print) -> list[str]:
    removed: list[str] = []
    for state_file in sorted(RUN_DIR.glob("*/state.json")):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state is not None:
            teardown_state(state, log=log)
            removed.append(state_file.parent.name)
    # overlays from a run whose state file was lost
    with open("/proc/self/mounts") as f:
        stale = [line.split()[1] for line in f if line.split()[1].startswith(str(RUN_DIR) + "/")]
    for mnt in sorted(stale, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        removed.append(mnt)
    for bridge in network.lab_bridges():
        network.delete_bridge(bridge)
        removed.append(bridge)
    if RUN_DIR.exists():
        for d in RUN_DIR.iterdir():
            shutil.rmtree(d, ignore_errors=True)
    return removed


def leftovers() -> dict[str, list[str]]:
    """What a clean runner must not have: lab bridges, live recorded processes, run directories."""
    from tests.lab.procs import Proc

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
