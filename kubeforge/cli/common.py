"""What every command module shares: the run log, the two consoles, the command line, --resume,
and pruning old run records once a command is over."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeforge.logs import RunLog
    from kubeforge.transport.pool import TransportPool

# --keep-runs / --keep-runs-days of this invocation (None: the defaults of kubeforge.execute.prune).
RUN_RETENTION: dict[str, int | None] = {"keep": None, "max_age_days": None}
# The run directories this invocation opened: pruning never deletes them.
OPENED_RUNS: list[Path] = []


def command_line() -> str:
    """The command as typed, for locks and journals (never holds secrets: they are not flags)."""
    return "kubeforge " + " ".join(sys.argv[1:])[:200]


def start_run_log(cluster, command: str) -> RunLog:
    """Open ``runs/<time>-<command>/`` with the full debug log; warnings also reach the terminal.
    The path is remembered so any failure can point at it."""
    from kubeforge.cli.errors import CURRENT_LOG_PATH
    from kubeforge.logs import console_handler, open_run_log

    log = open_run_log(cluster.state_dir, command, console=console_handler(level=logging.WARNING))
    CURRENT_LOG_PATH.append(str(log.path))
    OPENED_RUNS.append(Path(log.dir))
    return log


@contextmanager
def session(cluster, command: str) -> Iterator[tuple[RunLog, TransportPool]]:
    """One command's run log and host connections, ``(run_log, pool)``: the CLI's only door to
    the transport layer."""
    from kubeforge.transport.pool import TransportPool

    with start_run_log(cluster, command) as run_log, TransportPool(cluster) as pool:
        yield run_log, pool


def prune_opened_runs() -> None:
    """After the command (success or failure): prune the runs/ directories it wrote into. The one
    place run records are pruned; never fatal (a run that worked must not fail on housekeeping)."""
    from kubeforge.execute.prune import RunRetention, prune_runs

    settings = {k: v for k, v in RUN_RETENTION.items() if v is not None}
    for runs_dir in {p.parent for p in OPENED_RUNS}:
        try:
            prune_runs(runs_dir, RunRetention(**settings), protect={p.name for p in OPENED_RUNS})
        except OSError as exc:
            logging.getLogger("kubeforge.prune").warning("could not prune %s: %s", runs_dir, exc)
    OPENED_RUNS.clear()


def consoles():
    """(stdout console, stderr console). With --output json|yaml stdout is kept for the one
    document, so what a command prints for people goes to stderr."""
    from kubeforge.ui.console import make_console
    from kubeforge.ui.output import structured

    return make_console(stderr=structured()), make_console(stderr=True)


def resume_value(resume: bool, run: str | None) -> str | None:
    """``--resume [RUN]``: None when not resuming, "" for the latest unfinished run, else the id."""
    from kubeforge.errors import UsageError

    if run and not resume:
        raise UsageError(f"{run!r}: a run id is only accepted after --resume")
    return (run or "") if resume else None


def declined():
    """The operator answered no at the prompt: nothing changed, exit 8 like any other stop."""
    from kubeforge.errors import Interrupted

    return Interrupted("declined at the prompt: nothing was changed")


def run_plan(cluster, plan, pool, run_log, *, dry_run: bool, yes: bool, break_lock: bool = False,
             resume: str | None = None, converged: str = "nothing changed"):
    """Show progress, confirm, run under the local and cluster locks through the run engine; print
    the report (``converged``: the line shown when a successful run changed nothing). Raises what
    the executor raises."""
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.output import show
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.etcd.common import execute_plan

    out, err = consoles()
    if dry_run:
        from kubeforge.ui.plan_view import print_plan

        print_plan(out, plan)
    report = execute_plan(cluster, plan, pool, dry_run=dry_run, confirm=Confirmer(err, yes=yes),
                          events=make_progress(err), run_dir=None if dry_run else run_log.dir,
                          command=command_line(), break_lock=break_lock, resume=resume)
    if report is None:
        raise declined()

    def table() -> None:
        print_report(out, report)
        if report.outcome == "succeeded" and report.changed() == 0:
            out.print(converged)

    show(lambda: {"plan": plan.to_dict(), "report": report.to_dict()}, table)
    return report


def nothing_to_do(message: str) -> None:
    """The command found nothing to do: one line, or ``{"nothing_to_do": ...}`` with --output."""
    from kubeforge.ui.output import show

    show({"nothing_to_do": message}, lambda: consoles()[0].print(message, markup=False))
