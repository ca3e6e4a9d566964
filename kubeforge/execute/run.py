"""One call for workflows: dry-run, or confirm + lock + journal + execute, of one Plan.

    report = execute_plan(plan, state_dir=cluster.state_dir, pool=pool,
                          lock_host=cluster.first_control_plane.name, confirm=confirmer,
                          events=progress, options=RunOptions(resume=resume, dry_run=dry_run,
                          break_lock=break_lock, command="kubeforge upgrade --to 1.34.2"))

A workflow that wants the lock held while it gathers facts takes ``hold_locks`` itself around
facts + planning + this call, and passes ``lock=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubeforge.execute.confirm import run_confirmed
from kubeforge.execute.dry_run import DryRunExecutor
from kubeforge.execute.events import Events
from kubeforge.execute.executor import Executor
from kubeforge.errors import InputError
from kubeforge.execute.journal import COMPLETE, JOURNAL, Journal, latest_unfinished, new_run_id, read_records
from kubeforge.execute.lock import CLUSTER_LOCK_PATH, LockInfo, hold_locks
from kubeforge.execute.report import Report
from kubeforge.execute.step_runner import Pool
from kubeforge.plan.phase import Plan


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    resume: bool = False
    run_id: str | None = None  # with resume: this run rather than the latest unfinished one
    break_lock: bool = False
    command: str = ""  # the command line, for the lock's "held by" message (no secrets in it)


def completed_steps(runs_dir: Path, workflow: str, run_id: str | None = None) -> frozenset[str]:
    """Steps an unfinished run already did, read without writing anything (for dry runs)."""
    run_id = run_id or latest_unfinished(runs_dir, workflow)
    if run_id is None:
        return frozenset()
    records = read_records(Path(runs_dir) / run_id / JOURNAL)
    return frozenset(r["step"] for r in records if r.get("type") == "step" and r.get("status") in COMPLETE)


def execute_plan(
    plan: Plan,
    *,
    state_dir: Path,
    pool: Pool,
    lock_host: str | None,
    confirm: Callable[[Plan], bool] | None = None,
    events: Events | None = None,
    options: RunOptions = RunOptions(),
    run_dir: Path | None = None,
    lock: bool = True,
    cluster_lock_path: str = CLUSTER_LOCK_PATH,
    lock_sudo: bool = True,
) -> Report | None:
    """Run ``plan`` (or walk it, with ``dry_run``). ``None`` when the operator declined.

    ``run_dir``: the directory ``kubeforge.logs.open_run_log`` made for this run, so the journal
    and report sit beside the log; without it a run directory is created under ``runs/``.
    """
    runs_dir = Path(state_dir) / "runs"
    if options.dry_run:
        done = completed_steps(runs_dir, plan.workflow, options.run_id) if options.resume else frozenset()
        return DryRunExecutor(events=events, done_before=done).run(plan)

    class _Runner:
        def run(self, plan: Plan) -> Report:
            run_id = _run_id(runs_dir, plan.workflow, options, run_dir)
            if not lock:
                return _execute(plan, run_id)
            # The lock comes first: a refused run must leave no journal behind for --resume to find.
            info = LockInfo.mine(options.command or f"kubeforge {plan.workflow}", run_id)
            transport = pool.get(lock_host) if lock_host else None
            with hold_locks(
                Path(state_dir), transport, info, break_lock=options.break_lock,
                cluster_lock_path=cluster_lock_path, sudo=lock_sudo,
            ):
                return _execute(plan, run_id)

    def _execute(plan: Plan, run_id: str) -> Report:
        if options.resume:
            journal = Journal.resume(runs_dir, plan.workflow, run_id)
            if run_dir is not None:
                journal.log_file = _log_in(run_dir)
        elif run_dir is not None:
            journal = Journal.start_in(run_dir, plan.workflow)
        else:
            journal = Journal.create(runs_dir, plan.workflow, run_id=run_id)
        return Executor(pool, journal=journal, events=events).run(plan)

    return run_confirmed(plan, _Runner(), confirm or (lambda _plan: True))


def _run_id(runs_dir: Path, workflow: str, options: RunOptions, run_dir: Path | None) -> str:
    if options.resume:
        found = options.run_id or latest_unfinished(runs_dir, workflow)
        if found is None:
            raise InputError(
                f"no unfinished '{workflow}' run to resume under {runs_dir}",
                hint="run without --resume to start afresh",
            )
        return found
    return Path(run_dir).name if run_dir is not None else new_run_id(workflow)


def _log_in(run_dir: Path) -> Path | None:
    for name in ("kubeforge.log", "kubeforge.jsonl"):
        if (Path(run_dir) / name).exists():
            return Path(run_dir) / name
    return None
