"""Processes the lab starts in the background (nspawn, the mirror's http.server).

A PID alone is not an identity once the process is gone: the kernel reuses numbers. Each record
keeps the process start time from /proc too, and nothing is signalled unless both still match, so
``down --all`` after a crash never hits an unrelated process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may hold spaces and parentheses; fields resume after the last ')'
    return [raw[: raw.index("(")].strip(), "comm"] + raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    st = _stat(pid)
    return st[21] if st else None


@dataclass
class Proc:
    pid: int
    started: str  # /proc/<pid>/stat field 22: clock ticks since boot

    def alive(self) -> bool:
        st = _stat(self.pid)
        return bool(st) and st[21] == self.started and st[2] != "Z"

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                return True
            time.sleep(0.05)
        _reap(self.pid)
        return not self.alive()

    def children(self) -> list[int]:
        out: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        return out

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, d: dict | None) -> Proc | None:
        return cls(int(d["pid"]), str(d["started"])) if d else None


def _reap(pid: int) -> None:
    """Collect an exited child of this very process so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(argv: Sequence[str], log: Path, cgroups: Sequence[Path] = ()) -> Proc:
    """Start argv in its own session (setsid), detached from the caller's terminal, output to log,
    first moved into each cgroup directory in ``cgroups`` (created here)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for d in cgroups:
        d.mkdir(parents=True, exist_ok=True)

    def enter_cgroups() -> None:
        for d in cgroups:
            (d / "cgroup.procs").write_text("0")  # "0" moves the writing process itself

    with open(log, "ab") as out:
        p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=enter_cgroups if cgroups else None)
    # Popen would warn about a child it never waited for; the lab waits through the Proc instead.
    p.returncode = 0
    started = start_time(p.pid)
    if started is None:
        _reap(p.pid)
        raise RuntimeError(f"{argv[0]} exited at once; see {log}")
    return Proc(p.pid, started)


def terminate(proc: Proc | None, grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    if proc is None or not proc.alive():
        return
    proc.signal(signal.SIGTERM)
    if not proc.wait_gone(grace):
        proc.signal(signal.SIGKILL)
        proc.wait_gone(10)
