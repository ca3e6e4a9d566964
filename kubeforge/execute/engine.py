"""The run engine: the one path every mutating workflow (up, upgrade, reset, every etcd command)
takes from a Plan to a report.

    plan -> show/confirm -> locks -> journal -> execute -> report -> release

    run = execute(plan, Site(cluster.state_dir, pool, lock_host=first.name, run_dir=..., log_path=...),
                  RunOptions("kubeforge up -i lab.yaml", resume=None), confirm=confirmer, events=progress)

- A dry run walks the plan with the dry-run executor: no lock, no journal, no transport.
- A declined plan returns None: nothing was written anywhere.
- The locks come before the journal: a run refused because another holds the lock leaves nothing
  for --resume to find. The run id (the log's directory, or the run being resumed) is known before
  either, so the lock names it.
- SIGINT, SIGTERM and SIGHUP are handled here, from before the locks to after their release
  (kubeforge.execute.stop): nothing new starts, running steps end or are stopped on their hosts,
  the journal records how each ended, the locks are released, ``Interrupted`` carries the report.
- The locks are released whatever happened; a release that fails is a note on the report (and a
  warning) beside the run's own outcome, never in its place.
- ``stages``: a workflow whose later plans depend on what earlier ones did (upgrade, one hop at a
  time) gives a generator of plans, each made from fresh facts right before it runs, under the
  same locks and journal as the plan the operator confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kubeforge.errors import ExecutionFailed, InputError, Interrupted, KubeforgeError, TransportError
from kubeforge.execute.dry_run import DryRunExecutor
from kubeforge.execute.events import Events
from kubeforge.execute.executor import Executor
from kubeforge.execute.journal import COMPLETE, JOURNAL, Journal, latest_unfinished, new_run_id, read_records
from kubeforge.execute.lock import CLUSTER_LOCK_PATH, ClusterLock, LocalLock, LockInfo, clear_leftover, note_leftover
from kubeforge.execute.report import Report
from kubeforge.execute.step_runner import Pool
from kubeforge.execute.stop import Stop
from kubeforge.plan.phase import Plan

log = logging.getLogger("kubeforge.execute")


@dataclass(frozen=True)
class RunOptions:
    """How the operator asked to run: the flags every mutating command shares."""

    command: str = ""  # "kubeforge up -i lab.yaml", for the lock's holder line (never holds secrets)
    dry_run: bool = False
    resume: str | None = None  # None: a fresh run; "": the latest unfinished run; else that run id
    break_lock: bool = False


@dataclass(frozen=True)
class Site:
    """Where a run happens: the cluster's local state, its hosts, and the host holding the lock."""

    state_dir: Path
    pool: Pool
    lock_host: str | None  # the first control plane; None: only the local lock
    run_dir: Path | None = None  # made by kubeforge.logs.open_run_log: journal and report go beside the log
    log_path: Path | None = None
    cluster_lock_path: str = CLUSTER_LOCK_PATH
    lock_sudo: bool = True

    @property
    def runs_dir(self) -> Path:
        return Path(self.state_dir) / "runs"


@dataclass
class Run:
    run_id: str
    reports: list[Report] = field(default_factory=list)  # one per plan run (one per hop of an upgrade)

    @property
    def report(self) -> Report:
        return self.reports[-1]


def completed_steps(runs_dir: Path, workflow: str, resume: str | None) -> frozenset[str]:
    """Step ids an unfinished run already completed, read without writing anything (a dry run shows
    them as done earlier). Asking to resume when there is nothing to resume is a clear error rather
    than a silent fresh start."""
    if resume is None:
        return frozenset()
    run_id = _resumed_run_id(Path(runs_dir), workflow, resume)
    records = read_records(Path(runs_dir) / run_id / JOURNAL)
    return frozenset(r["step"] for r in records if r.get("type") == "step" and r.get("status") in COMPLETE)


def _resumed_run_id(runs_dir: Path, workflow: str, resume: str) -> str:
    run_id = resume or latest_unfinished(runs_dir, workflow)
    if not run_id:
        raise InputError(f"no unfinished '{workflow}' run to resume under {runs_dir}",
                         hint="run without --resume to start afresh")
    return run_id


def execute(
    plan: Plan,
    site: Site,
    options: RunOptions,
    *,
    confirm: Callable[[Plan], bool] | None = None,
    events: Events | None = None,
    show: Callable[[Plan], None] | None = None,
    stages: Callable[[], Iterable[Plan]] | None = None,
) -> Run | None:
    """Dry-run, or confirm and run ``plan`` (or ``stages()``) under the locks with a journal. None:
    the operator declined. Raises ExecutionFailed / Interrupted carrying the report of the plan that
    stopped; LockHeld (nothing written) when another run holds a lock. ``show`` prints the plan
    where no confirmation does (a dry run, a plan with nothing to do)."""
    if show is not None and (options.dry_run or plan.is_noop):
        show(plan)
    if options.dry_run:
        done = completed_steps(site.runs_dir, plan.workflow, options.resume)
        return Run("", [DryRunExecutor(events=events, done_before=done).run(plan)])
    if not plan.is_noop and confirm is not None and not confirm(plan):
        return None
    run_id = (_resumed_run_id(site.runs_dir, plan.workflow, options.resume) if options.resume is not None
              else site.run_dir.name if site.run_dir is not None else new_run_id(plan.workflow))
    stop = Stop()
    with stop.handling_signals():
        locks = _Locks(site, LockInfo.mine(options.command or f"kubeforge {plan.workflow}", run_id),
                       break_lock=options.break_lock)
        locks.take()  # LockHeld: nothing of this run exists yet
        run = Run(run_id)
        try:
            if stop.requested:
                raise Interrupted(f"{stop.reason()} before any step ran; nothing was changed")
            journal = _open_journal(site, plan.workflow, options, run_id)
            executor = Executor(site.pool, journal=journal, events=events, stop=stop)
            _run_stages(executor, journal, stop, plans=stages() if stages is not None else (plan,), run=run)
        except (ExecutionFailed, Interrupted) as exc:
            _release(locks, getattr(exc, "report", None), exc)
            raise
        except BaseException as exc:
            _release(locks, run.reports[-1] if run.reports else None, exc)
            raise
        _release(locks, run.report if run.reports else None, None)
    return run


def _run_stages(executor: Executor, journal: Journal, stop: Stop, *, plans: Iterable[Plan], run: Run) -> None:
    """Run each plan as it comes; the executor journals the end of each. Between two plans, a stop
    request or a failure to make the next plan (a refusal on fresh facts, a lost host) ends the run
    unfinished, so --resume finds it."""
    upcoming = iter(plans)
    while True:
        try:
            if run.reports and stop.requested:
                raise Interrupted(f"{stop.reason()} after {len(run.reports)} of the run's plans; continue with "
                                  f"--resume (run {journal.run_id})", run.report)
            plan = next(upcoming, None)
        except BaseException as exc:
            journal.finish("interrupted" if isinstance(exc, Interrupted) else "failed")
            raise
        if plan is None:
            return
        run.reports.append(executor.run(plan))


class _Locks:
    """The local lock, then the cluster lock on ``site.lock_host`` (broken first when asked)."""

    def __init__(self, site: Site, info: LockInfo, *, break_lock: bool) -> None:
        self.local = LocalLock(site.state_dir)
        self.cluster = (ClusterLock(site.pool.get(site.lock_host), site.cluster_lock_path, sudo=site.lock_sudo)
                        if site.lock_host else None)
        self.site = site
        self.info = info
        self.break_lock = break_lock

    def take(self) -> None:
        self.local.acquire(self.info)
        try:
            if self.cluster is not None:
                clear_leftover(self.site.state_dir, self.site.pool)  # an ended run's, from this state dir
                if self.break_lock:
                    self.cluster.break_()
                self.cluster.acquire(self.info)
        except BaseException:
            self.local.release()
            raise

    def release(self) -> list[str]:
        """Both released, whatever happens to either; what went wrong, as sentences."""
        problems = []
        if self.cluster is not None:
            failure: BaseException | None = None
            try:
                self.cluster.release()
            except (KubeforgeError, OSError) as exc:
                # the lock host's connection cut under the run: once more over a new one
                if not (isinstance(exc, TransportError) and _reconnected_release(self)):
                    failure = exc
            if failure is not None:
                try:
                    note_leftover(self.site.state_dir, self.cluster, self.info.run_id)
                    after = "this run has ended, so the next kubeforge run from this directory removes it"
                except OSError:
                    after = "once no kubeforge run is active, run again with --break-lock"
                problems.append(
                    f"the cluster lock {self.cluster.path} on {self.cluster.transport.host} could not be released "
                    f"({failure}); {after} (from another machine: --break-lock)")
        try:
            self.local.release()
        except OSError as exc:
            problems.append(f"the local lock {self.local.path} could not be released ({exc})")
        return problems


def _reconnected_release(locks: _Locks) -> bool:
    reconnect = getattr(locks.site.pool, "reconnect", None)
    if reconnect is None or locks.cluster is None:
        return False
    try:
        locks.cluster.transport = reconnect(locks.site.lock_host)
        locks.cluster.release()
    except (KubeforgeError, OSError) as exc:
        log.debug("releasing the cluster lock over a new connection failed: %s", exc)
        return False
    return True


def _release(locks: _Locks, report: Report | None, error: BaseException | None) -> None:
    problems = locks.release()
    for p in problems:
        log.warning("%s", p)
    if not problems:
        return
    if report is not None:
        report.notes.extend(problems)
        if report.run_dir:
            report.save(Path(report.run_dir) / "report.json")
    elif isinstance(error, KubeforgeError):
        error.hint = "; ".join([*([error.hint] if error.hint else []), *problems])


def _open_journal(site: Site, workflow: str, options: RunOptions, run_id: str) -> Journal:
    if options.resume is not None:
        journal = Journal.resume(site.runs_dir, workflow, run_id)
        journal.log_file = site.log_path or _log_in(site.run_dir)
        return journal
    if site.run_dir is not None:
        return Journal.start_in(site.run_dir, workflow)
    return Journal.create(site.runs_dir, workflow, run_id=run_id)


def _log_in(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    for name in ("kubeforge.log", "kubeforge.jsonl"):
        if (Path(run_dir) / name).exists():
            return Path(run_dir) / name
    return None
