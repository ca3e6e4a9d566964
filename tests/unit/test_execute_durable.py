"""Journal and report writes are durable: each record's file is fsync'd, and so is the directory entry
of every file and directory a run creates (else a power cut can lose a fsync'd file whole)."""

from __future__ import annotations

import os

import pytest
from test_execute_support import counting_plan, pool_for

from kubeforge.execute import Executor, Journal


@pytest.fixture
def fsynced(monkeypatch):
    """(device, inode) of everything fsync'd, in order; the real fsync still runs."""
    seen: list[tuple[int, int]] = []
    real = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        seen.append((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def ident(path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def test_a_new_run_makes_its_directory_and_journal_durable(tmp_path, fsynced):
    runs = tmp_path / "state" / "runs"
    journal = Journal.create(runs, "up")
    assert ident(journal.path) in fsynced  # the start record
    assert ident(journal.run_dir) in fsynced  # the journal's entry in the run directory
    assert ident(runs) in fsynced  # the run directory's entry in runs/
    assert ident(tmp_path / "state") in fsynced  # runs/ itself was new


def test_every_step_record_and_the_report_are_fsyncd(tmp_path, fsynced):
    journal = Journal.create(tmp_path / "runs", "counting")
    fsynced.clear()
    Executor(pool_for(tmp_path, ["cp-1"]), journal=journal).run(counting_plan(tmp_path / "c", ["cp-1"], 2))
    records = journal.records()
    # one fsync of the journal per record appended (2 + 1 steps, the end)
    assert fsynced.count(ident(journal.path)) == len(records) - 1 == 4
    # report.json: written to a temp file that is fsync'd, renamed, then the directory fsync'd
    assert ident(journal.report_path) in fsynced
    assert fsynced[-1] == ident(journal.run_dir)


def test_appending_to_an_existing_journal_does_not_fsync_the_directory_again(tmp_path, fsynced):
    journal = Journal.create(tmp_path / "runs", "up")
    fsynced.clear()
    journal.record_step("P/h/a", "P", "h", "done", 0.1)
    assert fsynced == [ident(journal.path)]
