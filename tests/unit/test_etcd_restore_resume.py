"""`etcd restore --resume`: which run it continues, with which backup and stamp, and what a plain
re-run does while a restore is unfinished. Everything here is decided before any host is asked
(the inventories' machines do not exist: a command that tried to reach one would fail with exit 5)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.backups.retention import BackupManifest, write_manifest
from kubeforge.errors import InputError, SafetyRefusal
from kubeforge.execute import Journal, RunOptions, Site, StepStatus, execute
from kubeforge.inventory import load_cluster
from kubeforge.plan.etcd.restore import RestoreInput, restore_command, restore_phases
from kubeforge.plan.phase import Plan
from kubeforge.workflows.etcd.restore import RECORD, RestoreRecord, plan_restore, refuse_unfinished, resumed_restore
from tests.factories import make_cluster
from tests.unit.test_etcd_cli import REPO, kf


@pytest.fixture
def inventory(tmp_path) -> Path:
    inv = tmp_path / "ha.yaml"
    shutil.copy(REPO / "inventories" / "ha-external-etcd.yaml", inv)
    return inv


def _restore_run(cluster, backup: str, outcome: str | None, stamp: str = "20261207T031500Z") -> Journal:
    """A restore run as kubeforge leaves it: its record, a journal with one step, how it ended."""
    journal = Journal.create(cluster.runs_dir, f"etcd restore {backup}")
    RestoreRecord(backup, f"/backups/{backup}.manifest.json", "ab" * 32, stamp).save(journal.run_dir)
    journal.record_step("StopEtcd/etcd-1/stop-etcd-0", "StopEtcd", "etcd-1", "done", 0.1)
    if outcome is not None:
        journal.finish(outcome)
    return journal


def _backup(directory: Path, name: str, body: bytes) -> Path:
    """A stored backup that passes verification: etcd's trailer is the sha256 of what precedes it."""
    body = body.ljust(8192, b"\0")  # etcd's smallest database is larger than this
    data = body + hashlib.sha256(body).digest()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.db").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    return write_manifest(directory, BackupManifest(
        name=name, cluster="test", created=datetime.now(UTC).isoformat(), member="etcd-1", etcd_version="3.5.21",
        revision=9, total_keys=1, snapshot_hash=1, size=len(data), sha256=sha, file=f"{name}.db", file_sha256=sha,
        encrypted=False, verified=True))


def test_a_plain_restore_is_refused_while_the_last_restore_is_unfinished_and_says_how_to_go_on(inventory):
    journal = _restore_run(load_cluster(inventory), "ha-20261207T030000Z", "interrupted")
    res = kf("etcd", "restore", "-i", str(inventory), "--from", "latest", "--yes")
    assert res.returncode == 7, res.stdout + res.stderr
    text = " ".join(res.stderr.split())
    assert f"run {journal.run_id}" in text and "interrupted" in text
    assert "--resume" in text and "--start-over" in text


def test_a_killed_restore_with_no_end_record_blocks_a_plain_restore_too(tmp_path):
    cluster = make_cluster(tmp_path)
    _restore_run(cluster, "b1", None)
    with pytest.raises(SafetyRefusal, match="never ended"):
        refuse_unfinished(cluster)


def test_start_over_restores_from_the_start_despite_an_unfinished_restore(inventory):
    _restore_run(load_cluster(inventory), "ha-20261207T030000Z", "failed")
    res = kf("etcd", "restore", "-i", str(inventory), "--from", "latest", "--start-over", "--yes")
    # past the refusal: it looks for the backup (there is none here) before asking any host
    assert res.returncode == 3 and "no verified backup to restore" in res.stderr, res.stdout + res.stderr


def test_a_plain_restore_goes_ahead_once_the_last_restore_succeeded(tmp_path):
    cluster = make_cluster(tmp_path)
    _restore_run(cluster, "b1", "interrupted")
    _restore_run(cluster, "b2", "succeeded")
    refuse_unfinished(cluster)  # the newest restore run is the one that counts
    assert resumed_restore(cluster, "")[1] is None


def test_resume_after_a_finished_restore_says_nothing_to_resume(inventory):
    journal = _restore_run(load_cluster(inventory), "ha-20261207T030000Z", "succeeded")
    res = kf("etcd", "restore", "-i", str(inventory), "--resume", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing to resume" in res.stdout and journal.run_id in res.stdout


def test_resume_with_no_restore_run_at_all_is_a_clear_input_error(inventory):
    res = kf("etcd", "restore", "-i", str(inventory), "--resume", "--yes")
    assert res.returncode == 3 and "no etcd restore run to resume" in res.stderr, res.stdout + res.stderr


def test_resume_and_start_over_together_and_a_restore_without_from_are_usage_errors(inventory):
    both = kf("etcd", "restore", "-i", str(inventory), "--resume", "--start-over", "--yes")
    assert both.returncode == 2 and "choose one" in both.stderr, both.stderr
    bare = kf("etcd", "restore", "-i", str(inventory), "--yes")
    assert bare.returncode == 2 and "--from BACKUP is needed" in bare.stderr, bare.stderr


def test_resume_continues_the_last_restore_run_with_its_own_record(tmp_path):
    cluster = make_cluster(tmp_path)
    _restore_run(cluster, "b1", "succeeded", stamp="20261207T020000Z")
    journal = _restore_run(cluster, "b2", "interrupted", stamp="20261207T031500Z")
    info, record = resumed_restore(cluster, "")
    assert info["run_id"] == journal.run_id
    assert record == RestoreRecord("b2", "/backups/b2.manifest.json", "ab" * 32, "20261207T031500Z")
    assert resumed_restore(cluster, journal.run_id)[1] == record


def test_an_older_restore_run_is_never_resumed_over_a_newer_one(tmp_path):
    cluster = make_cluster(tmp_path)
    older = _restore_run(cluster, "b1", "interrupted")
    _restore_run(cluster, "b2", "succeeded")
    with pytest.raises(SafetyRefusal, match="not the last etcd restore"):
        resumed_restore(cluster, older.run_id)
    with pytest.raises(InputError, match="no etcd restore run of that id"):
        resumed_restore(cluster, "20261207T000000Z-up")


def test_a_run_without_its_record_cannot_be_resumed_and_says_start_over(tmp_path):
    cluster = make_cluster(tmp_path)
    journal = _restore_run(cluster, "b1", "interrupted")
    (journal.run_dir / RECORD).unlink()
    with pytest.raises(InputError, match="cannot be resumed") as info:
        resumed_restore(cluster, "")
    assert "--start-over" in (info.value.hint or "")


def test_resume_restores_the_runs_own_backup_and_refuses_another_or_a_changed_one(tmp_path):
    cluster = make_cluster(tmp_path)
    backups = tmp_path / "backups"
    first = _backup(backups, "test-1", b"first snapshot")
    _backup(backups, "test-2", b"a later snapshot")  # what `latest` means now
    good = hashlib.sha256(first.with_name("test-1.db").read_bytes()).hexdigest()
    record = RestoreRecord("test-1", str(first), good, "20261207T031500Z")
    # no pool: every refusal comes before any host is asked
    with pytest.raises(SafetyRefusal, match="the restore being resumed restores test-1"):
        plan_restore(cluster, None, "latest", directory=backups, resume=record)
    changed = RestoreRecord("test-1", str(first), "cd" * 32, "20261207T031500Z")
    with pytest.raises(SafetyRefusal, match="not the one the resumed restore began with"):
        plan_restore(cluster, None, None, resume=changed)


def _input(cluster, stamp: str) -> RestoreInput:
    return RestoreInput(cluster, cluster.etcd_members, {}, cluster.control_planes, b"snapshot", "ab" * 32, "test-1", stamp)


def test_a_resumed_restore_plans_the_same_step_ids_so_the_journal_skips_what_was_done(tmp_path):
    cluster = make_cluster(tmp_path)
    first = Plan("etcd restore test-1", tuple(restore_phases(_input(cluster, "20261207T031500Z"))))
    again = Plan("etcd restore test-1", tuple(restore_phases(_input(cluster, "20261207T031500Z"))))
    later = Plan("etcd restore test-1", tuple(restore_phases(_input(cluster, "20261207T040000Z"))))
    assert [s.id for s in first.steps] == [s.id for s in again.steps]
    # a new stamp (a new run) is a different aside dir and token: different restore steps
    moved = {s.id for s in first.steps} - {s.id for s in later.steps}
    assert moved and all(i.startswith("RestoreMemberData/") for i in moved)


def test_the_run_engine_shows_what_the_interrupted_restore_did_as_done_earlier_and_nothing_else(tmp_path):
    cluster = make_cluster(tmp_path)
    first = Plan("etcd restore test-1", tuple(restore_phases(_input(cluster, "20261207T031500Z"))))
    journal = Journal.create(cluster.runs_dir, first.workflow)
    done = first.steps[:7]  # three API servers and three etcds stopped, one snapshot pushed
    for step in done:
        journal.record_step(step.id, step.phase, step.host, "done", 0.1)
    journal.finish("interrupted")
    resumed = Plan(first.workflow, tuple(restore_phases(_input(cluster, "20261207T031500Z"))))
    site = Site(cluster.state_dir, None, cluster.etcd_members[0].name)  # a dry run never touches a host
    run = execute(resumed, site, RunOptions(dry_run=True, resume=journal.run_id))
    assert run is not None
    earlier = [r.step_id for r in run.report.results if r.status is StepStatus.EARLIER]
    assert earlier == [s.id for s in done]
    assert sum(r.status is StepStatus.PLANNED for r in run.report.results) == len(resumed.steps) - len(done)


def test_the_restore_step_stops_an_etcd_its_restarted_machine_booted_and_syncs_before_it_is_done(tmp_path):
    cluster = make_cluster(tmp_path)
    lines = restore_command(_input(cluster, "20261207T031500Z"), cluster.etcd_members[0]).script.splitlines()
    stop = lines.index("systemctl stop etcd")
    assert stop < next(i for i, line in enumerate(lines) if line.startswith("if [ -e /var/lib/etcd ]"))
    assert lines[-1] == "sync"


def test_the_record_round_trips_through_the_run_directory(tmp_path):
    record = RestoreRecord("b1", "/backups/b1.manifest.json", "ab" * 32, "20261207T031500Z")
    record.save(tmp_path)
    assert (tmp_path / RECORD).stat().st_mode & 0o777 == 0o600
    assert RestoreRecord.load(tmp_path) == record
