"""Signals reach the run engine in a real process: SIGTERM and SIGHUP stop the running command on its
host, SIGINT lets it end; either way the journal records how each step ended, both locks are
released, the report names what was done, stopped and never reached, the exit is 8, and --resume
finishes without repeating a completed step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kubeforge.execute import LocalLock, LockInfo
from kubeforge.execute.journal import read_records, run_summary

UNIT_DIR = Path(__file__).parent

# A real kubeforge run in a child process: the engine over LocalTransports, the cluster lock in a
# file, a plan whose middle step on cp-1 is a long command whose own pid is written first.
CHILD = """
import sys
from pathlib import Path
from test_execute_support import counting_step, pool_for
from kubeforge.errors import KubeforgeError
from kubeforge.execute import RunOptions, Site, execute
from kubeforge.plan import HostLane, PhasePlan, Plan, RunStep, parallel
from kubeforge.transport.base import Command

tmp, resume = Path(sys.argv[1]), sys.argv[2] == "resume"
counter = tmp / "counter"
# how long it sleeps is read when it runs, so the step (and its id) is the same in every attempt
long = (f"echo long-start >> {counter}\\nbash -c 'echo $$ > {tmp / 'long.pid'}; exec sleep $(cat {tmp / 'seconds'})'\\n"
        f"echo long-end >> {counter}")
lanes = (
    HostLane("cp-1", (counting_step("cp-1", counter, "a"), RunStep("cp-1", Command(script=long), "Long"),
                      counting_step("cp-1", counter, "c"))),
    HostLane("cp-2", (counting_step("cp-2", counter, "a"),)),
)
plan = Plan("signals", (PhasePlan("Work", "Work", parallel(), lanes),))
site = Site(tmp / "state", pool_for(tmp, ["cp-1", "cp-2"]), "cp-1", cluster_lock_path=str(tmp / "cp-1-lock"),
            lock_sudo=False)
try:
    run = execute(plan, site, RunOptions("kubeforge test", resume="" if resume else None))
except KubeforgeError as exc:
    print(exc, flush=True)
    report = getattr(exc, "report", None)
    if report is not None:
        print(report.render_text(), flush=True)
    sys.exit(exc.exit_code)
print(run.report.render_text(), flush=True)
"""


def start(tmp_path: Path, *, resume: bool = False, seconds: float = 60) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(UNIT_DIR), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "seconds").write_text(f"{seconds}\n")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "resume" if resume else "fresh"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_long_step(tmp_path: Path, child: subprocess.Popen) -> int:
    """The pid of the long command, once it runs."""
    pid_file = tmp_path / "long.pid"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.poll() is None:
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        time.sleep(0.02)
    out, err = child.communicate(timeout=10)
    pytest.fail(f"the long step never started: exit {child.returncode}\n{out}\n{err}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone as far as the host is concerned
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def counter(tmp_path: Path) -> list[str]:
    p = tmp_path / "counter"
    return p.read_text().splitlines() if p.exists() else []


def the_run(tmp_path: Path) -> Path:
    (run,) = [p for p in (tmp_path / "state" / "runs").iterdir() if (p / "journal.jsonl").exists()]
    return run


def assert_locks_released(tmp_path: Path) -> None:
    assert not (tmp_path / "cp-1-lock").exists(), "the cluster lock was left behind"
    lock = LocalLock(tmp_path / "state")
    lock.acquire(LockInfo.mine("next run", "next"))  # raises LockHeld if it were still held
    lock.release()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_running_command_release_the_locks_and_resume_finishes(tmp_path, sig):
    child = start(tmp_path)
    long_pid = wait_for_long_step(tmp_path, child)
    assert (tmp_path / "cp-1-lock").exists()
    child.send_signal(sig)
    out, err = child.communicate(timeout=30)  # far less than the 60 s the command would take
    assert child.returncode == 8, out + err
    assert not alive(long_pid), "the step's command still runs after kubeforge exited"
    assert "long-end" not in counter(tmp_path)
    assert_locks_released(tmp_path)

    name = signal.Signals(sig).name
    assert f"interrupted by {name}: 2 done, 0 unchanged, 0 failed, 1 interrupted, 1 never reached" in out
    assert "interrupted [cp-1] Long" in out
    assert "continue with --resume" in out

    run = the_run(tmp_path)
    records = read_records(run / "journal.jsonl")
    steps = sorted((r["host"], r["status"]) for r in records if r["type"] == "step")
    assert steps == [("cp-1", "done"), ("cp-1", "interrupted"), ("cp-2", "done")]
    assert run_summary(run)["outcome"] == "interrupted"
    assert json.loads((run / "report.json").read_text())["outcome"] == "interrupted"

    resumed = start(tmp_path, resume=True, seconds=0.1)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out + err
    counts = Counter(counter(tmp_path))
    # the stopped step runs again (it never completed); nothing that completed runs twice
    assert counts == Counter({"cp-1 a": 1, "cp-2 a": 1, "long-start": 2, "long-end": 1, "cp-1 c": 1})
    assert_locks_released(tmp_path)


def test_sigint_lets_the_running_step_end_and_journals_it_done(tmp_path):
    child = start(tmp_path, seconds=2)
    long_pid = wait_for_long_step(tmp_path, child)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 8, out + err
    assert not alive(long_pid)
    assert counter(tmp_path)[-1] == "long-end"  # it ended on its own
    assert "interrupted by SIGINT: 3 done, 0 unchanged, 0 failed, 0 interrupted, 1 never reached" in out
    assert_locks_released(tmp_path)

    resumed = start(tmp_path, resume=True, seconds=0.1)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, out + err
    assert Counter(counter(tmp_path)) == Counter(
        {"cp-1 a": 1, "cp-2 a": 1, "long-start": 1, "long-end": 1, "cp-1 c": 1})


def test_a_second_sigint_stops_the_running_step(tmp_path):
    child = start(tmp_path)
    long_pid = wait_for_long_step(tmp_path, child)
    child.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the first one only stops new steps: the 60 s command still runs
    assert alive(long_pid) and child.poll() is None
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 8, out + err
    assert not alive(long_pid)
    assert "1 interrupted" in out
    assert_locks_released(tmp_path)
