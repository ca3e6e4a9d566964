"""execute_plan: the one call workflows make — dry-run, or confirm, lock, journal and execute."""

from __future__ import annotations

from collections import Counter

import pytest
from test_execute_support import counting_step, pool_for

from kubeforge.errors import ExecutionFailed, LockHeld
from kubeforge.execute import ClusterLock, LockInfo, StepStatus, latest_unfinished
from kubeforge.execute.run import RunOptions, execute_plan
from kubeforge.plan import HostLane, PhasePlan, Plan, RunStep, serial
from kubeforge.transport.base import Command

HOSTS = ["cp-1", "worker-1"]


def plan_for(tmp_path, *, broken: bool = False) -> Plan:
    counter = tmp_path / "counter"
    gate = f"test ! -e {tmp_path / 'broken'}\n" if broken else ""
    lanes = (
        HostLane("cp-1", (counting_step("cp-1", counter, "a"),)),
        HostLane("worker-1", (RunStep("worker-1", Command(script=f"{gate}echo 'worker-1 b' >> {counter}"), "Step b"),)),
    )
    return Plan("up", (PhasePlan("Work", "Work", serial(), lanes),))


def call(tmp_path, plan, **options):
    return execute_plan(
        plan,
        state_dir=tmp_path / "state",
        pool=pool_for(tmp_path, HOSTS),
        lock_host="cp-1",
        options=RunOptions(command="kubeforge up -i inv.yaml", **options),
        cluster_lock_path=str(tmp_path / "cp-1-lock"),
        lock_sudo=False,
    )


def lines(tmp_path):
    p = tmp_path / "counter"
    return p.read_text().splitlines() if p.exists() else []


def test_a_run_leaves_journal_and_report_and_releases_its_locks(tmp_path):
    report = call(tmp_path, plan_for(tmp_path))
    assert report.outcome == "succeeded"
    run_dir = tmp_path / "state" / "runs" / report.run_id
    assert (run_dir / "journal.jsonl").exists() and (run_dir / "report.json").exists()
    assert not (tmp_path / "cp-1-lock").exists()
    assert lines(tmp_path) == ["cp-1 a", "worker-1 b"]


def test_dry_run_takes_no_lock_and_writes_nothing(tmp_path):
    ClusterLock(pool_for(tmp_path, HOSTS)["cp-1"], str(tmp_path / "cp-1-lock"), sudo=False).acquire(
        LockInfo.mine("kubeforge upgrade", "someone-else")
    )
    report = call(tmp_path, plan_for(tmp_path), dry_run=True)
    assert report.outcome == "dry-run"
    assert lines(tmp_path) == []
    assert not (tmp_path / "state").exists()


def test_a_refused_lock_leaves_no_run_for_resume_to_find(tmp_path):
    ClusterLock(pool_for(tmp_path, HOSTS)["cp-1"], str(tmp_path / "cp-1-lock"), sudo=False).acquire(
        LockInfo("bob", "bob-desktop", 99, "kubeforge upgrade", "2026-11-22T07:00:00Z", "run-bob")
    )
    with pytest.raises(LockHeld, match="bob@bob-desktop"):
        call(tmp_path, plan_for(tmp_path))
    assert lines(tmp_path) == []
    assert latest_unfinished(tmp_path / "state" / "runs", "up") is None
    assert call(tmp_path, plan_for(tmp_path), break_lock=True).outcome == "succeeded"


def test_resume_continues_the_failed_run_and_dry_run_shows_what_is_left(tmp_path):
    (tmp_path / "broken").touch()
    with pytest.raises(ExecutionFailed) as info:
        call(tmp_path, plan_for(tmp_path, broken=True))
    failed_run = info.value.report.run_id
    journal = tmp_path / "state" / "runs" / failed_run / "journal.jsonl"
    before = journal.read_bytes()

    preview = call(tmp_path, plan_for(tmp_path, broken=True), dry_run=True, resume=True)
    assert [r.status for r in preview.results] == [StepStatus.EARLIER, StepStatus.PLANNED]
    assert journal.read_bytes() == before  # a dry run writes nothing, not even to the journal

    (tmp_path / "broken").unlink()
    report = call(tmp_path, plan_for(tmp_path, broken=True), resume=True)
    assert report.run_id == failed_run
    assert Counter(lines(tmp_path)) == Counter(["cp-1 a", "worker-1 b"])


def test_declining_the_confirmation_creates_no_run(tmp_path):
    result = execute_plan(
        plan_for(tmp_path), state_dir=tmp_path / "state", pool=pool_for(tmp_path, HOSTS), lock_host=None,
        confirm=lambda plan: False,
    )
    assert result is None
    assert lines(tmp_path) == [] and not (tmp_path / "state").exists()
