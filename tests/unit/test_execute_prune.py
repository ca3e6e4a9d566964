"""Run records are pruned by count and by age, never the latest unfinished run of a workflow (its
--resume target) nor a run being written; pruning happens once per command, from the CLI boundary."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kubeforge.execute.journal import Journal
from kubeforge.execute.prune import RunRetention, prune_runs

DAY = 86400.0
NOW = 2_000_000_000.0


def run(runs: Path, name: str, *, age_days: float, workflow: str | None = None, outcome: str | None = "succeeded") -> Path:
    """A run directory as kubeforge leaves it: a log, and for mutating commands a journal."""
    d = runs / name
    if workflow:
        journal = Journal.create(runs, workflow, run_id=name)
        if outcome:
            journal.finish(outcome)
    else:
        d.mkdir(parents=True)
    (d / "kubeforge.log").write_text("log\n")
    t = NOW - age_days * DAY
    for p in [*d.iterdir(), d]:
        os.utime(p, (t, t))
    return d


def names(runs: Path) -> set[str]:
    return {p.name for p in runs.iterdir()}


def test_runs_beyond_the_count_go_oldest_first(tmp_path):
    runs = tmp_path / "runs"
    for i in range(6):
        run(runs, f"r{i}-facts", age_days=6 - i)
    deleted = prune_runs(runs, RunRetention(keep=4, max_age_days=30), now=NOW)
    assert sorted(deleted) == ["r0-facts", "r1-facts"]
    assert names(runs) == {"r2-facts", "r3-facts", "r4-facts", "r5-facts"}


def test_runs_older_than_the_age_go_even_within_the_count(tmp_path):
    runs = tmp_path / "runs"
    run(runs, "old-facts", age_days=40)
    run(runs, "new-facts", age_days=1)
    assert prune_runs(runs, RunRetention(keep=50, max_age_days=30), now=NOW) == ["old-facts"]


def test_the_latest_unfinished_run_of_a_workflow_is_kept_whatever_its_age_and_rank(tmp_path):
    runs = tmp_path / "runs"
    run(runs, "up-failed-old", age_days=100, workflow="up", outcome="failed")
    run(runs, "up-interrupted", age_days=90, workflow="up", outcome=None)  # killed: no end record
    run(runs, "upgrade-ok", age_days=80, workflow="upgrade")
    for i in range(3):
        run(runs, f"facts-{i}", age_days=i)
    prune_runs(runs, RunRetention(keep=1, max_age_days=7), now=NOW)
    # the newest unfinished `up` stays (what --resume continues); the older failed one and the
    # finished upgrade go
    assert names(runs) == {"up-interrupted", "facts-0"}


def test_a_run_being_written_is_never_pruned(tmp_path):
    runs = tmp_path / "runs"
    run(runs, "current-facts", age_days=365)
    assert prune_runs(runs, RunRetention(keep=1, max_age_days=1), protect={"current-facts"}, now=NOW) == []


def test_a_missing_runs_directory_is_nothing_to_prune(tmp_path):
    assert prune_runs(tmp_path / "runs") == []


def test_retention_keeps_at_least_one_run_and_one_day():
    with pytest.raises(ValueError):
        RunRetention(keep=0)


def test_the_cli_prunes_after_a_command_with_the_flags_given(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # known_hosts and the like stay in the test's directory
    from kubeforge.cli.app import run as kubeforge

    inv = tmp_path / "inventory.yaml"
    inv.write_bytes((Path(__file__).resolve().parents[2] / "inventories" / "single-node.yaml").read_bytes())
    runs = tmp_path / ".kubeforge" / "single" / "runs"
    real_now = time.time()
    for i in range(5):
        d = runs / f"2026010{i}T000000Z-facts"
        d.mkdir(parents=True)
        t = real_now - (5 - i) * 60
        os.utime(d, (t, t))
    # kubeconfig opens a run log, then fails (nothing listens on port 1): the boundary still prunes
    inv.write_text(inv.read_text().replace("192.168.50.10", "127.0.0.1").replace(
        "    hostKeyPolicy: accept-new", "    hostKeyPolicy: accept-new\n    port: 1\n    connectRetries: 0"))
    code = kubeforge(["--keep-runs", "2", "kubeconfig", "-i", str(inv)])
    capsys.readouterr()
    assert code == 5
    kept = sorted(p.name for p in runs.iterdir())
    assert len(kept) == 2 and kept[0] == "20260104T000000Z-facts" and kept[1].endswith("-kubeconfig")
