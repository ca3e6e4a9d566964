"""Several pytest sessions (other engineers, CI) may boot labs on one runner at once. A lab index is
claimed by holding an flock on /run/kubeforge-lab/lab<N>.lock for the lab's lifetime; a state dir
whose lock is free and whose processes are all gone is a leftover and is cleaned before reuse."""

from __future__ import annotations

import fcntl
import json
import os

from tests.lab.paths import RUN_DIR, LabError, LabId
from tests.lab.procs import Proc


def _live(index: int) -> bool:
    state_file = LabId(index).state_file
    try:
        st = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return False
    recs = [m.get("proc") for m in st.get("machines", [])] + [st.get("mirror")]
    return any(p and p.alive() for p in map(Proc.from_json, recs))


def try_lock(index: int) -> int | None:
    """An open, locked fd for lab ``index``, or None when another process holds it."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN_DIR / f"{LabId(index).name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim(start: int = 1, stop: int = 100) -> tuple[int, int]:
    """(index, lock fd) of a free lab slot. Index 0 is left to ``python -m tests.lab up`` by hand."""
    from tests.lab.lab import teardown_state

    for index in range(start, stop):
        fd = try_lock(index)
        if fd is None:
            continue
        if _live(index):  # booted by the CLI, which holds no lock once it exits
            os.close(fd)
            continue
        state_file = LabId(index).state_file
        if state_file.exists():
            try:
                teardown_state(json.loads(state_file.read_text()), log=lambda *_: None)
            except (OSError, ValueError):
                pass
        return index, fd
    raise LabError(f"no free lab slot in {start}..{stop - 1} under {RUN_DIR}; run: python -m tests.lab down --all")


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
