"""The run engine: the one path of every mutating workflow — dry-run, or confirm, locks, journal,
execute, report, release."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest
from test_execute_support import counting_step, pool_for

from kubeforge.errors import ExecutionFailed, Interrupted, LockHeld
from kubeforge.execute import ClusterLock, LocalLock, LockInfo, RunOptions, Site, StepStatus, execute, latest_unfinished
from kubeforge.execute.journal import read_records, run_summary
from kubeforge.plan import HostLane, PhasePlan, Plan, RunStep, serial
from kubeforge.transport.base import Command

HOSTS = ["cp-1", "worker-1"]


def plan_for(tmp_path, *, broken: bool = False, extra: str = "") -> Plan:
    counter = tmp_path / "counter"
    gate = f"test ! -e {tmp_path / 'broken'}\n" if broken else ""
    lanes = (
        HostLane("cp-1", (counting_step("cp-1", counter, "a"),)),
        HostLane("worker-1", (RunStep("worker-1", Command(script=f"{gate}{extra}echo 'worker-1 b' >> {counter}"), "Step b"),)),
    )
    return Plan("up", (PhasePlan("Work", "Work", serial(), lanes),))


def site(tmp_path, **kw) -> Site:
    return Site(tmp_path / "state", pool_for(tmp_path, HOSTS), "cp-1", cluster_lock_path=str(tmp_path / "cp-1-lock"),
                lock_sudo=False, **kw)


def call(tmp_path, plan, *, stages=None, **options):
    run = execute(plan, site(tmp_path), RunOptions("kubeforge up -i inv.yaml", **options), stages=stages)
    return run.report


def lines(tmp_path):
    p = tmp_path / "counter"
    return p.read_text().splitlines() if p.exists() else []


def someone_holds_the_cluster_lock(tmp_path) -> None:
    ClusterLock(pool_for(tmp_path, HOSTS)["cp-1"], str(tmp_path / "cp-1-lock"), sudo=False).acquire(
        LockInfo("bob", "bob-desktop", 99, "kubeforge upgrade", "2026-11-22T07:00:00Z", "run-bob")
    )


def test_a_run_leaves_journal_and_report_and_releases_its_locks(tmp_path):
    report = call(tmp_path, plan_for(tmp_path))
    assert report.outcome == "succeeded"
    run_dir = tmp_path / "state" / "runs" / report.run_id
    assert (run_dir / "journal.jsonl").exists() and (run_dir / "report.json").exists()
    assert not (tmp_path / "cp-1-lock").exists()
    assert lines(tmp_path) == ["cp-1 a", "worker-1 b"]
    LocalLock(tmp_path / "state").acquire(LockInfo.mine("next run", "r2"))  # the local lock is free too


def test_the_journal_starts_in_the_directory_of_the_runs_log(tmp_path):
    from kubeforge.logs import open_run_log

    with open_run_log(tmp_path / "state", "up") as run_log:
        run = execute(plan_for(tmp_path), site(tmp_path, run_dir=run_log.dir, log_path=run_log.path),
                      RunOptions("kubeforge up"))
    assert run.run_id == run_log.dir.name
    assert (run_log.dir / "journal.jsonl").exists() and run.report.log_path == str(run_log.path)


def test_dry_run_takes_no_lock_and_writes_nothing(tmp_path):
    someone_holds_the_cluster_lock(tmp_path)
    report = call(tmp_path, plan_for(tmp_path), dry_run=True)
    assert report.outcome == "dry-run"
    assert lines(tmp_path) == []
    assert not (tmp_path / "state").exists()


def test_a_refused_lock_leaves_no_run_for_resume_to_find(tmp_path):
    someone_holds_the_cluster_lock(tmp_path)
    with pytest.raises(LockHeld, match="bob@bob-desktop"):
        call(tmp_path, plan_for(tmp_path))
    assert lines(tmp_path) == []
    assert latest_unfinished(tmp_path / "state" / "runs", "up") is None
    with pytest.raises(LockHeld):  # the local lock was given back when the cluster lock was refused
        call(tmp_path, plan_for(tmp_path))
    assert call(tmp_path, plan_for(tmp_path), break_lock=True).outcome == "succeeded"


def test_resume_after_a_refused_run_continues_the_interrupted_run_and_repeats_nothing(tmp_path):
    """The case from the issue: a run stops, a second attempt is refused by the lock, then --resume
    must pick the first run (not the refused one) and not replay what it did."""
    (tmp_path / "broken").touch()
    with pytest.raises(ExecutionFailed) as info:
        call(tmp_path, plan_for(tmp_path, broken=True))
    first = info.value.report.run_id
    someone_holds_the_cluster_lock(tmp_path)
    with pytest.raises(LockHeld):
        call(tmp_path, plan_for(tmp_path, broken=True), resume="")
    with pytest.raises(LockHeld):
        call(tmp_path, plan_for(tmp_path, broken=True))
    assert latest_unfinished(tmp_path / "state" / "runs", "up") == first
    records = read_records(tmp_path / "state" / "runs" / first / "journal.jsonl")
    assert [r["type"] for r in records] == ["start", "step", "step", "end"]  # the refusals wrote nothing to it

    (tmp_path / "broken").unlink()
    report = call(tmp_path, plan_for(tmp_path, broken=True), resume="", break_lock=True)
    assert report.run_id == first
    assert Counter(lines(tmp_path)) == Counter(["cp-1 a", "worker-1 b"])


def test_resume_continues_the_failed_run_and_dry_run_shows_what_is_left(tmp_path):
    (tmp_path / "broken").touch()
    with pytest.raises(ExecutionFailed) as info:
        call(tmp_path, plan_for(tmp_path, broken=True))
    failed_run = info.value.report.run_id
    journal = tmp_path / "state" / "runs" / failed_run / "journal.jsonl"
    before = journal.read_bytes()

    preview = call(tmp_path, plan_for(tmp_path, broken=True), dry_run=True, resume="")
    assert [r.status for r in preview.results] == [StepStatus.EARLIER, StepStatus.PLANNED]
    assert journal.read_bytes() == before  # a dry run writes nothing, not even to the journal

    (tmp_path / "broken").unlink()
    report = call(tmp_path, plan_for(tmp_path, broken=True), resume=failed_run)
    assert report.run_id == failed_run
    assert Counter(lines(tmp_path)) == Counter(["cp-1 a", "worker-1 b"])


def test_resume_with_nothing_to_resume_is_an_input_error(tmp_path):
    from kubeforge.errors import InputError

    with pytest.raises(InputError, match="no unfinished 'up' run"):
        call(tmp_path, plan_for(tmp_path), resume="")


def test_declining_the_confirmation_creates_no_run(tmp_path):
    result = execute(plan_for(tmp_path), site(tmp_path), RunOptions("kubeforge up"), confirm=lambda plan: False)
    assert result is None
    assert lines(tmp_path) == [] and not (tmp_path / "state").exists()


def test_both_locks_are_released_when_the_run_fails(tmp_path):
    (tmp_path / "broken").touch()
    with pytest.raises(ExecutionFailed):
        call(tmp_path, plan_for(tmp_path, broken=True))
    assert not (tmp_path / "cp-1-lock").exists()
    (tmp_path / "broken").unlink()
    assert call(tmp_path, plan_for(tmp_path)).outcome == "succeeded"


def immutable(path) -> None:
    res = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"this test needs a filesystem with chattr +i under {path}: {res.stderr}"


def mutable(path) -> None:
    subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def test_a_lock_that_cannot_be_released_is_reported_beside_a_successful_outcome(tmp_path, caplog):
    lock = tmp_path / "cp-1-lock"
    # The run's own step makes the lock file immutable: removing it at release fails for real.
    plan = plan_for(tmp_path, extra=f"chattr +i {lock}\n")
    try:
        report = call(tmp_path, plan)
        assert report.outcome == "succeeded"
        assert lines(tmp_path) == ["cp-1 a", "worker-1 b"]
        note = f"the cluster lock {lock} on cp-1 could not be released"
        assert any(note in n for n in report.notes)
        assert "--break-lock" in report.notes[0]
        saved = (tmp_path / "state" / "runs" / report.run_id / "report.json").read_text()
        assert note in saved and '"outcome": "succeeded"' in saved
        assert note in report.render_text() and report.render_text().startswith("up: succeeded")
        assert any(note in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        LocalLock(tmp_path / "state").acquire(LockInfo.mine("next run", "r2"))  # the local lock was released
    finally:
        mutable(lock)


def test_the_next_run_removes_the_cluster_lock_an_ended_run_could_not_release(tmp_path):
    lock = tmp_path / "cp-1-lock"
    try:  # the run's own step makes its lock file immutable: the release at its end fails for real
        first = call(tmp_path, plan_for(tmp_path, extra=f"chattr +i {lock}\n"))
    finally:
        mutable(lock)  # the lock's host is back
    assert first.outcome == "succeeded" and lock.exists()
    assert "the next kubeforge run from this directory removes it" in first.notes[0]
    note = tmp_path / "state" / "cluster-lock-left.json"
    assert json.loads(note.read_text())["run_id"] == first.run_id
    assert note.stat().st_mode & 0o777 == 0o600
    second = call(tmp_path, plan_for(tmp_path))  # not refused: the lock was its own ended run's
    assert second.outcome == "succeeded" and second.notes == []
    assert not lock.exists() and not note.exists()


def test_a_leftover_lock_note_never_removes_a_lock_another_run_took_since(tmp_path):
    lock = tmp_path / "cp-1-lock"
    try:
        call(tmp_path, plan_for(tmp_path, extra=f"chattr +i {lock}\n"))
    finally:
        mutable(lock)
    lock.unlink()  # bob broke it (--break-lock) and took the lock for his own run
    someone_holds_the_cluster_lock(tmp_path)
    with pytest.raises(LockHeld, match="bob@bob-desktop"):
        call(tmp_path, plan_for(tmp_path))
    assert '"run_id": "run-bob"' in lock.read_text()
    assert not (tmp_path / "state" / "cluster-lock-left.json").exists()  # nothing of ours is left to remove


def test_a_lock_that_cannot_be_released_does_not_replace_the_runs_failure(tmp_path):
    lock = tmp_path / "cp-1-lock"
    # the failing step first makes the lock file immutable
    plan = Plan("up", (PhasePlan("Work", "Work", serial(), (
        HostLane("worker-1", (RunStep("worker-1", Command(script=f"chattr +i {lock}\nexit 3"), "Break"),)),)),))
    try:
        with pytest.raises(ExecutionFailed) as info:
            call(tmp_path, plan)
        assert info.value.exit_code == 6
        assert "[worker-1] Break" in str(info.value)
        report = info.value.report
        assert report.outcome == "failed"
        assert any("could not be released" in n for n in report.notes)
    finally:
        mutable(lock)


def test_a_refusal_while_planning_a_later_stage_leaves_the_run_resumable(tmp_path):
    from kubeforge.errors import SafetyRefusal

    def stages():
        yield plan_for(tmp_path)
        raise SafetyRefusal("hop 2 refused on fresh facts")

    with pytest.raises(SafetyRefusal):
        call(tmp_path, plan_for(tmp_path), stages=stages)
    runs = tmp_path / "state" / "runs"
    run = latest_unfinished(runs, "up")
    assert run is not None and run_summary(runs / run)["outcome"] == "failed"
    assert not (tmp_path / "cp-1-lock").exists()


def test_every_stage_runs_under_one_journal_and_one_lock(tmp_path):
    seen = []

    def stages():
        for label in ("hop-1", "hop-2"):
            seen.append(os.path.exists(tmp_path / "cp-1-lock"))
            yield Plan("up", (PhasePlan("Work", "Work", serial(), (
                HostLane("cp-1", (counting_step("cp-1", tmp_path / "counter", label),)),)),))

    run = execute(plan_for(tmp_path), site(tmp_path), RunOptions("kubeforge up"), stages=stages)
    assert seen == [True, True]
    assert len(run.reports) == 2 and {r.run_id for r in run.reports} == {run.run_id}
    assert lines(tmp_path) == ["cp-1 hop-1", "cp-1 hop-2"]


def test_an_interrupted_run_names_what_was_done_stopped_and_never_reached(tmp_path):
    from kubeforge.execute import Executor, Stop

    stop = Stop()
    counter = tmp_path / "counter"
    lanes = (HostLane("cp-1", (counting_step("cp-1", counter, "a"),
                               RunStep("cp-1", Command(script=f"touch {tmp_path / 'running'}; sleep 30"), "Long"),
                               counting_step("cp-1", counter, "c"))),)
    plan = Plan("t", (PhasePlan("Work", "Work", serial(), lanes),))
    import threading
    import time

    def interrupt():
        while not (tmp_path / "running").exists():
            time.sleep(0.02)
        import signal

        stop.request(signal.SIGTERM)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(Interrupted) as info:
        Executor(pool_for(tmp_path, ["cp-1"]), stop=stop).run(plan)
    report = info.value.report
    assert [r.status for r in report.results] == [StepStatus.DONE, StepStatus.INTERRUPTED, StepStatus.NOT_REACHED]
    assert str(info.value).startswith("interrupted by SIGTERM: 1 done, 0 unchanged, 0 failed, 1 interrupted, 1 never reached")
    text = report.render_text()
    assert "interrupted [cp-1] Long" in text and "1 never reached" in text


class _CutPool(dict):
    """pool_for's transports; cp-1's connection is cut once ``cut`` exists (as the fault matrix's
    ssh-cut does: every later command on it fails with ConnectionLost), and ``reconnect`` gives a
    new connection, as TransportPool.reconnect does."""

    def __init__(self, tmp_path, cut):
        from kubeforge.transport.local import LocalTransport
        from kubeforge.transport.policy import ConnectionLost

        class Cut(LocalTransport):
            def run(self, command):
                if cut.exists():
                    raise ConnectionLost(self.host, "connection lost: SSH session not active")
                return super().run(command)

        super().__init__(pool_for(tmp_path, HOSTS))
        self["cp-1"] = Cut(host="cp-1", root=tmp_path / "hosts" / "cp-1")
        self.fresh = lambda: LocalTransport(host="cp-1", root=tmp_path / "hosts" / "cp-1")
        self.reconnects = 0

    def reconnect(self, host):
        self.reconnects += 1
        self[host] = self.fresh()
        return self[host]


def test_a_cluster_lock_whose_connection_was_cut_under_the_run_is_released_over_a_new_one(tmp_path):
    cut = tmp_path / "cut"
    pool = _CutPool(tmp_path, cut)
    plan = plan_for(tmp_path, extra=f"touch {cut}\n")  # worker-1's step cuts cp-1's connection
    s = Site(tmp_path / "state", pool, "cp-1", cluster_lock_path=str(tmp_path / "cp-1-lock"), lock_sudo=False)
    report = execute(plan, s, RunOptions("kubeforge up -i inv.yaml")).report
    assert report.outcome == "succeeded" and pool.reconnects == 1
    assert not (tmp_path / "cp-1-lock").exists()
    assert not any("could not be released" in n for n in report.notes)
