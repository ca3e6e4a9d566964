"""The journal records every completed step; --resume skips what was done; Ctrl-C keeps it."""

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
from test_execute_support import counting_plan, counting_step, pool_for

from kubeforge.errors import ExecutionFailed, InputError
from kubeforge.execute import Executor, Journal, StepStatus, latest_unfinished
from kubeforge.execute.journal import run_summary
from kubeforge.plan import HostLane, PhasePlan, Plan, RunStep, serial
from kubeforge.transport.base import Command
from tests.terminal import foreground_sigint

HOSTS = ["cp-1", "cp-2", "cp-3"]
UNIT_DIR = Path(__file__).parent


def lines(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def flaky_plan(counter: Path, fixed: Path) -> Plan:
    """cp-2's second step fails until ``fixed`` exists; every step counts itself."""
    lanes = []
    for h in HOSTS:
        steps = [counting_step(h, counter, "a")]
        if h == "cp-2":
            steps.append(RunStep(h, Command(script=f"test -e {fixed}\necho '{h} b' >> {counter}"), "Step b"))
        else:
            steps.append(counting_step(h, counter, "b"))
        lanes.append(HostLane(h, tuple(steps)))
    return Plan("upgrade 1.34.2", (PhasePlan("UpgradeControlPlanes", "Upgrade control planes", serial(), tuple(lanes)),))


def test_the_journal_has_one_fsynced_record_per_completed_step(tmp_path):
    counter = tmp_path / "counter"
    plan = counting_plan(counter, HOSTS, 2)
    journal = Journal.create(tmp_path / "runs", plan.workflow)
    report = Executor(pool_for(tmp_path, HOSTS), journal=journal).run(plan)
    records = journal.records()
    assert records[0]["type"] == "start" and records[0]["workflow"] == "counting"
    steps = [r for r in records if r["type"] == "step"]
    # The serial phase journals in plan order; the parallel one in whatever order hosts finish.
    assert [r["step"] for r in steps[:6]] == [s.id for s in plan.steps[:6]]
    assert sorted(r["step"] for r in steps[6:]) == sorted(s.id for s in plan.steps[6:])
    assert all(r["status"] == "done" and "time" in r and "duration" in r for r in steps)
    assert records[-1]["type"] == "end" and records[-1]["outcome"] == "succeeded"
    saved = json.loads(journal.report_path.read_text())
    assert saved["outcome"] == "succeeded" and saved["run_id"] == journal.run_id == report.run_id
    assert journal.path.stat().st_mode & 0o777 == 0o600


def test_resume_after_a_failure_finishes_without_repeating_a_completed_step(tmp_path):
    counter, fixed, runs = tmp_path / "counter", tmp_path / "fixed", tmp_path / "runs"
    plan = flaky_plan(counter, fixed)
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, HOSTS), journal=Journal.create(runs, plan.workflow)).run(plan)
    assert lines(counter) == ["cp-1 a", "cp-1 b", "cp-2 a"]
    assert info.value.report.run_id == latest_unfinished(runs, plan.workflow)

    fixed.touch()  # the operator repaired cp-2; the workflow plans again from fresh facts
    journal = Journal.resume(runs, plan.workflow)
    report = Executor(pool_for(tmp_path, HOSTS), journal=journal).run(flaky_plan(counter, fixed))
    assert Counter(lines(counter)) == Counter(f"{h} {s}" for h in HOSTS for s in "ab")
    assert [r.status for r in report.results].count(StepStatus.EARLIER) == 3
    assert latest_unfinished(runs, plan.workflow) is None
    assert run_summary(journal.run_dir)["outcome"] == "succeeded"


def renewing_plan(counter: Path, fixed: Path) -> Plan:
    """cp-1 renews a lease (kubeadm's uploaded certificates) that cp-2's failing step needs."""
    renew = RunStep("cp-1", Command(script=f"echo 'cp-1 renew' >> {counter}"), "Renew", repeat_on_resume=True)
    lanes = (HostLane("cp-1", (renew, counting_step("cp-1", counter, "a"))),
             HostLane("cp-2", (RunStep("cp-2", Command(script=f"test -e {fixed}\necho 'cp-2 b' >> {counter}"), "Step b"),)))
    return Plan("up", (PhasePlan("Renew", "Renew", serial(), (lanes[0],)), PhasePlan("Join", "Join", serial(), (lanes[1],))))


def test_a_step_that_renews_a_lease_runs_again_on_resume_and_the_rest_does_not(tmp_path):
    counter, fixed, runs = tmp_path / "counter", tmp_path / "fixed", tmp_path / "runs"
    with pytest.raises(ExecutionFailed):
        Executor(pool_for(tmp_path, HOSTS), journal=Journal.create(runs, "up")).run(renewing_plan(counter, fixed))
    assert lines(counter) == ["cp-1 renew", "cp-1 a"]
    fixed.touch()
    plan = renewing_plan(counter, fixed)
    assert plan.steps[0].to_dict()["repeat_on_resume"] is True and "repeat_on_resume" not in plan.steps[1].to_dict()
    report = Executor(pool_for(tmp_path, HOSTS), journal=Journal.resume(runs, "up")).run(plan)
    assert lines(counter) == ["cp-1 renew", "cp-1 a", "cp-1 renew", "cp-2 b"]
    assert [r.status for r in report.results] == [StepStatus.DONE, StepStatus.EARLIER, StepStatus.DONE]


def test_a_file_rendered_anew_between_attempts_is_written_again_on_resume(tmp_path):
    """The content is part of a put's id: a kubeadm config holding a token rotated since the interrupted
    attempt must reach the host, not be skipped as done earlier (the unchanged file still is)."""
    from kubeforge.model import RenderedFile
    from kubeforge.plan import PutFileStep

    fixed, runs = tmp_path / "fixed", tmp_path / "runs"

    def plan(token: bytes) -> Plan:
        steps = (PutFileStep("cp-1", RenderedFile("/etc/kubeforge/join.yaml", b"token: " + token + b"\n", mode=0o600,
                                                  secret=True)),
                 PutFileStep("cp-1", RenderedFile("/etc/kubeforge/other.yaml", b"same\n")),
                 RunStep("cp-1", Command(script=f"test -e {fixed}"), "Join"))
        return Plan("up", (PhasePlan("Join", "Join", serial(), (HostLane("cp-1", steps),)),))

    with pytest.raises(ExecutionFailed):
        Executor(pool_for(tmp_path, HOSTS), journal=Journal.create(runs, "up")).run(plan(b"old"))
    fixed.touch()
    report = Executor(pool_for(tmp_path, HOSTS), journal=Journal.resume(runs, "up")).run(plan(b"new"))
    assert [r.status for r in report.results] == [StepStatus.DONE, StepStatus.EARLIER, StepStatus.DONE]
    assert (tmp_path / "hosts/cp-1/etc/kubeforge/join.yaml").read_bytes() == b"token: new\n"


def test_resume_refuses_when_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(InputError, match="no unfinished 'up' run"):
        Journal.resume(tmp_path / "runs", "up")


def test_resume_refuses_a_run_of_another_workflow(tmp_path):
    j = Journal.create(tmp_path / "runs", "upgrade 1.34.2")
    j.finish("failed")
    with pytest.raises(InputError, match="was 'upgrade 1.34.2'"):
        Journal.resume(tmp_path / "runs", "up", run_id=j.run_id)
    assert latest_unfinished(tmp_path / "runs", "upgrade 1.35.0") is None


def test_a_torn_last_line_does_not_hide_the_steps_before_it(tmp_path):
    j = Journal.create(tmp_path / "runs", "up")
    j.record_step("P/h/a", "P", "h", "done", 0.1)
    with open(j.path, "a") as f:
        f.write('{"type": "step", "step": "P/h/b", "sta')  # the process died mid-write
    assert Journal.resume(tmp_path / "runs", "up").completed == {"P/h/a"}


CHILD = """
import sys
from pathlib import Path
from test_execute_support import counting_plan, pool_for
from kubeforge.errors import Interrupted
from kubeforge.execute import Executor, Journal

tmp, mode = Path(sys.argv[1]), sys.argv[2]
hosts = ["cp-1", "cp-2", "cp-3"]
plan = counting_plan(tmp / "counter", hosts, 3, seconds=0.15)
runs = tmp / "runs"
journal = Journal.resume(runs, plan.workflow) if mode == "resume" else Journal.create(runs, plan.workflow)
try:
    Executor(pool_for(tmp, hosts), journal=journal).run(plan)
except Interrupted as exc:
    print(exc, flush=True)
    sys.exit(exc.exit_code)
print("finished", flush=True)
"""


def run_child(tmp_path: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(UNIT_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), mode],
        env=env,
        preexec_fn=foreground_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigint_mid_run_keeps_the_journal_and_resume_finishes_with_no_step_repeated(tmp_path):
    counter = tmp_path / "counter"
    child = run_child(tmp_path, "fresh")
    deadline = time.monotonic() + 20
    while len(lines(counter)) < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    assert child.returncode == 8, err
    assert "continue with --resume" in out

    done_first = lines(counter)
    assert 2 <= len(done_first) < 12
    run_dir = next((tmp_path / "runs").iterdir())
    summary = run_summary(run_dir)
    assert summary["outcome"] == "interrupted"
    # The step that was running when Ctrl-C came finished and was journaled: nothing is lost.
    assert summary["steps"] == len(done_first)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["outcome"] == "interrupted"

    resumed = run_child(tmp_path, "resume")
    out, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 0, err
    assert "finished" in out
    counts = Counter(lines(counter))
    assert set(counts.values()) == {1}, f"repeated steps: {[k for k, v in counts.items() if v > 1]}"
    assert len(counts) == 12


def test_a_journal_can_start_in_the_run_directory_the_log_already_made(tmp_path):
    from kubeforge.logs import open_run_log

    with open_run_log(tmp_path / "state", "up") as run_log:
        journal = Journal.start_in(run_log.dir, "counting")
        report = Executor(pool_for(tmp_path, ["cp-1"]), journal=journal).run(counting_plan(tmp_path / "c", ["cp-1"], 1))
    assert journal.run_id == run_log.dir.name
    assert report.log_path == str(run_log.path)
    assert latest_unfinished(tmp_path / "state" / "runs", "counting") is None


def test_the_run_log_records_every_step_with_its_host_and_no_secret(tmp_path):
    from kubeforge.logs import open_run_log
    from kubeforge.model import Secret

    token = "log-secret-value-998877"
    step = RunStep("cp-1", Command(script='echo "$T" >&2; exit 1', env={"T": Secret(token)}), "Join")
    plan = Plan("join", (PhasePlan("Join", "Join", serial(), (HostLane("cp-1", (step,)),)),))
    with open_run_log(tmp_path / "state", "join") as run_log:
        with pytest.raises(ExecutionFailed):
            Executor(pool_for(tmp_path, ["cp-1"]), journal=Journal.start_in(run_log.dir, "join")).run(plan)
    text = run_log.path.read_text()
    assert f"[cp-1] {plan.steps[0].id}: start Join: T=***" in text
    assert f"[cp-1] {plan.steps[0].id}: failed in" in text
    assert token not in text
