"""What every command module shares: the run log, the two consoles, the command line, --resume."""

from __future__ import annotations

import logging
import sys


def command_line() -> str:
    """The command as typed, for locks and journals (never holds secrets: they are not flags)."""
    return "kubeforge " + " ".join(sys.argv[1:])[:200]


def start_run_log(cluster, command: str):
    """Open ``runs/<time>-<command>/`` with the full debug log; warnings also reach the terminal.
    The path is remembered so any failure can point at it."""
    from kubeforge.cli.errors import CURRENT_LOG_PATH
    from kubeforge.logs import console_handler, open_run_log

    log = open_run_log(cluster.state_dir, command, console=console_handler(level=logging.WARNING))
    CURRENT_LOG_PATH.append(str(log.path))
    return log


def consoles():
    """(stdout console, stderr console)."""
    from kubeforge.ui.console import make_console

    return make_console(), make_console(stderr=True)


def resume_value(resume: bool, run: str | None) -> str | None:
    """``--resume [RUN]``: None when not resuming, "" for the latest unfinished run, else the id."""
    from kubeforge.errors import UsageError

    if run and not resume:
        raise UsageError(f"{run!r}: a run id is only accepted after --resume")
    return (run or "") if resume else None
