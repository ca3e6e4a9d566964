"""The run journal: one JSON line per completed step, durable (the file and its directory are
fsync'd: kubeforge.execute.durable), so ``--resume`` knows what is done even after a power cut.

Layout: ``<state_dir>/runs/<run-id>/journal.jsonl`` beside ``report.json`` and the run's log. The
first record names the workflow; a step record is written the moment the step ends; the last record
says how the run ended. A run whose journal has no successful end is unfinished and can be resumed:
resuming appends to the same journal, so a run interrupted twice still knows every step it did.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeforge.errors import InputError
from kubeforge.execute.durable import append_line, make_dir
from kubeforge.plan.steps import slug

JOURNAL = "journal.jsonl"
REPORT = "report.json"
LOG = "kubeforge.log"

# Steps in these states are not repeated on resume.
COMPLETE = ("done", "unchanged", "done earlier")


def _now() -> datetime:
    return datetime.now(UTC)


def new_run_id(workflow: str, now: datetime | None = None) -> str:
    """``20261122T074501Z-upgrade-1-34-2-3f9a``: sortable by time, readable, unique."""
    t = (now or _now()).strftime("%Y%m%dT%H%M%SZ")
    return f"{t}-{slug(workflow)}-{secrets.token_hex(2)}"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a journal; a line torn by a crash mid-write is ignored."""
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


@dataclass
class Journal:
    run_dir: Path
    run_id: str
    workflow: str
    completed: set[str] = field(default_factory=set)  # step ids done in earlier attempts of this run
    resumed: bool = False
    # The run's log file when kubeforge.logs opened it elsewhere (a resumed run logs to a new dir).
    log_file: Path | None = None
    clock: Callable[[], datetime] = field(default=_now, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def path(self) -> Path:
        return self.run_dir / JOURNAL

    @property
    def report_path(self) -> Path:
        return self.run_dir / REPORT

    @property
    def log_path(self) -> Path:
        if self.log_file is not None:
            return self.log_file
        for name in (LOG, "kubeforge.jsonl"):
            if (self.run_dir / name).exists():
                return self.run_dir / name
        return self.run_dir / LOG

    # --- opening ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: Path, workflow: str, *, run_id: str | None = None) -> Journal:
        run_id = run_id or new_run_id(workflow)
        run_dir = Path(runs_dir) / run_id
        make_dir(run_dir)
        journal = cls(run_dir, run_id, workflow)
        journal._append({"type": "start", "run_id": run_id, "workflow": workflow, "pid": os.getpid()})
        return journal

    @classmethod
    def start_in(cls, run_dir: Path, workflow: str) -> Journal:
        """Start the journal in a run directory that already exists (``kubeforge.logs.open_run_log``
        made it); the directory name is the run id."""
        run_dir = Path(run_dir)
        if (run_dir / JOURNAL).exists():
            raise InputError(f"{run_dir} already holds a journal; use Journal.resume to continue it")
        journal = cls(run_dir, run_dir.name, workflow)
        journal._append({"type": "start", "run_id": run_dir.name, "workflow": workflow, "pid": os.getpid()})
        return journal

    @classmethod
    def resume(cls, runs_dir: Path, workflow: str, run_id: str | None = None) -> Journal:
        """Reopen the given run, or the latest unfinished run of ``workflow``."""
        runs_dir = Path(runs_dir)
        if run_id is None:
            found = latest_unfinished(runs_dir, workflow)
            if found is None:
                raise InputError(
                    f"no unfinished '{workflow}' run to resume under {runs_dir}",
                    hint="run without --resume to start afresh",
                )
            run_id = found
        records = read_records(runs_dir / run_id / JOURNAL)
        if not records:
            raise InputError(f"no journal for run {run_id} under {runs_dir}")
        start = records[0]
        if start.get("workflow") != workflow:
            raise InputError(
                f"run {run_id} was '{start.get('workflow')}', not '{workflow}'; it cannot be resumed by this command"
            )
        done = {r["step"] for r in records if r.get("type") == "step" and r.get("status") in COMPLETE}
        journal = cls(runs_dir / run_id, run_id, workflow, completed=done, resumed=True)
        journal._append({"type": "resume", "pid": os.getpid(), "already_done": len(done)})
        return journal

    # --- writing ---------------------------------------------------------------------------------
    def _append(self, record: dict[str, Any]) -> None:
        record = {**record, "time": self.clock().isoformat(timespec="milliseconds")}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            append_line(self.path, line)

    def record_step(self, step_id: str, phase: str, host: str, status: str, duration: float) -> None:
        self._append(
            {"type": "step", "step": step_id, "phase": phase, "host": host, "status": status, "duration": round(duration, 3)}
        )
        if status in COMPLETE:
            with self._lock:
                self.completed.add(step_id)

    def finish(self, outcome: str) -> None:
        self._append({"type": "end", "outcome": outcome})

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path)


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Workflow, outcome (None while unfinished) and step counts of one run, from its journal."""
    records = read_records(run_dir / JOURNAL)
    start = records[0] if records else {}
    ends = [r for r in records if r.get("type") == "end"]
    resumes = [i for i, r in enumerate(records) if r.get("type") == "resume"]
    last_end = max((i for i, r in enumerate(records) if r.get("type") == "end"), default=-1)
    # An end record followed by a resume means that attempt ended and a new one began.
    outcome = ends[-1]["outcome"] if ends and last_end > max(resumes, default=-1) else None
    return {
        "run_id": run_dir.name,
        "workflow": start.get("workflow"),
        "started": start.get("time"),
        "outcome": outcome,
        "steps": sum(1 for r in records if r.get("type") == "step"),
    }


def latest_run(runs_dir: Path, matches: Callable[[str], bool]) -> dict[str, Any] | None:
    """The summary (``run_summary``) of the newest run whose workflow ``matches``, or None."""
    if not runs_dir.is_dir():
        return None
    def activity(p: Path) -> tuple[int, str]:
        # The most recently written journal wins; run ids alone tie within one second.
        try:
            return (p.joinpath(JOURNAL).stat().st_mtime_ns, p.name)
        except FileNotFoundError:
            return (0, p.name)

    for run_dir in sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=activity, reverse=True):
        info = run_summary(run_dir)
        if isinstance(info["workflow"], str) and matches(info["workflow"]):
            return info
    return None


def latest_unfinished(runs_dir: Path, workflow: str) -> str | None:
    """The newest run of ``workflow`` that did not end in success (failed, interrupted, killed)."""
    info = latest_run(runs_dir, lambda w: w == workflow)
    return info["run_id"] if info is not None and info["outcome"] != "succeeded" else None
