"""Keep ``.kubeforge/<cluster>/runs/`` in check: delete run records beyond a count and older than an
age, never the latest unfinished run of any workflow (``--resume`` needs it) and never a run that
is still being written (``protect``).

    prune_runs(state_dir / "runs", RunRetention(keep=50, max_age_days=90), protect={this_run})

A run record is one directory (log, journal, report). Its age is that of its newest file, so a run
that was resumed last week counts from last week. Defaults: 50 runs, 90 days — a cluster that runs
`facts` hourly keeps two days of them, and a rare `upgrade` keeps its journal for a season.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from kubeforge.execute.journal import JOURNAL, latest_unfinished, run_summary

log = logging.getLogger("kubeforge.prune")

DEFAULT_KEEP = 50
DEFAULT_MAX_AGE_DAYS = 90


@dataclass(frozen=True)
class RunRetention:
    keep: int = DEFAULT_KEEP  # newest run records kept whatever their age
    max_age_days: int = DEFAULT_MAX_AGE_DAYS  # older ones go even within the count

    def __post_init__(self) -> None:
        if self.keep < 1 or self.max_age_days < 1:
            raise ValueError("run retention keeps at least 1 run and 1 day")


def _last_activity(run_dir: Path) -> float:
    times = [run_dir.stat().st_mtime]
    for p in run_dir.iterdir():
        try:
            times.append(p.stat().st_mtime)
        except FileNotFoundError:
            pass
    return max(times)


def unfinished_runs(runs_dir: Path) -> set[str]:
    """The latest unfinished run of every workflow that has a journal here."""
    workflows = {run_summary(d)["workflow"] for d in runs_dir.iterdir() if (d / JOURNAL).is_file()}
    found = (latest_unfinished(runs_dir, w) for w in workflows if w)
    return {r for r in found if r}


def prune_runs(runs_dir: Path, retention: RunRetention = RunRetention(), *, protect: AbstractSet[str] = frozenset(),
               now: float | None = None) -> list[str]:
    """Delete what ``retention`` lets go; return the names of the deleted run directories."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    now = time.time() if now is None else now
    runs = sorted(((_last_activity(d), d) for d in runs_dir.iterdir() if d.is_dir()), reverse=True)
    keep = set(protect) | unfinished_runs(runs_dir)
    cutoff = now - retention.max_age_days * 86400
    deleted = []
    for index, (activity, run_dir) in enumerate(runs):
        if run_dir.name in keep:
            continue
        if index >= retention.keep or activity < cutoff:
            shutil.rmtree(run_dir, ignore_errors=True)
            deleted.append(run_dir.name)
    if deleted:
        log.debug("pruned %d run record(s) under %s: %s", len(deleted), runs_dir, ", ".join(deleted))
    return deleted
