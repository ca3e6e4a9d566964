"""How errors reach the operator: one line each on stderr, the log path, a traceback only with -v;
with --output json|yaml also one error object on stdout. The exit code is decided here, once."""

from __future__ import annotations

import sys
import traceback

from kubeforge.errors import InventoryError, KubeforgeError, TransportError
from kubeforge.model.secret import redact

# Set by a workflow once it has opened the run's log file, so failures can point at it.
CURRENT_LOG_PATH: list[str] = []
UNREACHABLE = "unreachable"


def _log() -> str | None:
    return CURRENT_LOG_PATH[-1] if CURRENT_LOG_PATH else None


def exit_code_of(exc: KubeforgeError) -> tuple[int, str]:
    """(exit code, category). A host that could not be reached is 5 whatever else the error says
    (a refused upgrade, a failed preflight, an etcd member that did not answer)."""
    if isinstance(exc, TransportError) or exc.unreachable:
        return TransportError.exit_code, UNREACHABLE if not isinstance(exc, TransportError) else exc.category
    return exc.exit_code, exc.category


def _structured_error(exit_code: int, category: str, message: str, hint: str | None, problems=None,
                      report=None) -> None:
    from kubeforge.ui import output

    if not output.structured():
        return
    if output.STATE.document is None and report is not None and hasattr(report, "to_dict"):
        output.STATE.document = {"report": report.to_dict()}
    output.finish(output.error_object(exit_code=exit_code, category=category, message=redact(message),
                                      hint=redact(hint) if hint else None, log=_log(), problems=problems))


def report_error(exc: KubeforgeError, *, verbose: bool = False) -> int:
    err = sys.stderr
    code, category = exit_code_of(exc)
    problems = None
    if isinstance(exc, InventoryError):
        for p in exc.warnings:
            print(redact(str(p)), file=err)
        for p in exc.problems:
            print(redact(str(p)), file=err)
        print(f"error: {exc.summary}", file=err)
        problems = [redact(str(p)) for p in exc.problems]
    else:
        print(f"error: {redact(str(exc))}", file=err)
    if exc.unreachable and not isinstance(exc, TransportError):
        print(f"unreachable: {', '.join(exc.unreachable)}", file=err)
    if exc.hint:
        print(f"hint: {redact(exc.hint)}", file=err)
    report = getattr(exc, "report", None)
    if report is not None and hasattr(report, "render_text"):
        print(redact(report.render_text()), file=err)
    if _log():
        print(f"log: {_log()}", file=err)
    if verbose:
        print(redact("".join(traceback.format_exception(exc))), file=err)
    message = exc.summary if isinstance(exc, InventoryError) else str(exc)
    _structured_error(code, category, message, exc.hint, problems, report)
    return code


def report_usage(exc) -> int:
    """A click usage error (unknown option, missing -i, bad --output value): exit 2."""
    exc.show(file=sys.stderr)
    _structured_error(exc.exit_code, "usage", exc.format_message(), "see --help", None)
    return exc.exit_code


def report_bug(exc: BaseException, *, verbose: bool = False) -> int:
    err = sys.stderr
    message = f"unexpected {type(exc).__name__} — this is a bug in kubeforge; please report it"
    print(f"error: {message}", file=err)
    if _log():
        print(f"log: {_log()}", file=err)
    if verbose:
        print(redact("".join(traceback.format_exception(exc))), file=err)
    else:
        print("run again with -v for the traceback", file=err)
    _structured_error(1, "bug", message, "run again with -v for the traceback", None)
    return 1
