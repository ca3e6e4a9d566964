"""How errors reach the operator: one line each, the log path, a traceback only with -v."""

from __future__ import annotations

import sys
import traceback

from kubeforge.errors import InventoryError, KubeforgeError
from kubeforge.model.secret import redact

# Set by a workflow once it has opened the run's log file, so failures can point at it.
CURRENT_LOG_PATH: list[str] = []


def _log_hint() -> str:
    return f"log: {CURRENT_LOG_PATH[-1]}" if CURRENT_LOG_PATH else ""


def report_error(exc: KubeforgeError, *, verbose: bool = False) -> int:
    err = sys.stderr
    if isinstance(exc, InventoryError):
        for p in exc.warnings:
            print(redact(str(p)), file=err)
        for p in exc.problems:
            print(redact(str(p)), file=err)
        print(f"error: {exc.summary}", file=err)
    else:
        print(f"error: {redact(str(exc))}", file=err)
    if exc.hint:
        print(f"hint: {redact(exc.hint)}", file=err)
    report = getattr(exc, "report", None)
    if report is not None and hasattr(report, "render_text"):
        print(redact(report.render_text()), file=err)
    hint = _log_hint()
    if hint:
        print(hint, file=err)
    if verbose:
        print(redact("".join(traceback.format_exception(exc))), file=err)
    return exc.exit_code


def report_bug(exc: BaseException, *, verbose: bool = False) -> int:
    err = sys.stderr
    print(f"error: unexpected {type(exc).__name__} — this is a bug in kubeforge; please report it", file=err)
    hint = _log_hint()
    if hint:
        print(hint, file=err)
    if verbose:
        print(redact("".join(traceback.format_exception(exc))), file=err)
    else:
        print("run again with -v for the traceback", file=err)
    return 1
