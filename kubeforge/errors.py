"""Typed errors. Each category maps to one exit code; only kubeforge.cli catches them.

Exit codes (stable, documented in the README):
  0  success
  1  unexpected error (a bug in kubeforge)
  2  usage error (bad flags; typer's own code)
  3  invalid inventory or input file
  4  preflight or health check failed (nothing was changed)
  5  a host could not be reached or refused us (SSH, host key)
  6  a step failed on a host while executing a plan
  7  refused by a safety rule (downgrade, skipped minor, quorum, lock held)
  8  interrupted (Ctrl-C, SIGTERM, SIGHUP); the locks were released, the journal kept for --resume
  9  a certificate expires within the asked window
"""

from __future__ import annotations

from dataclasses import dataclass, field


class KubeforgeError(Exception):
    """Base of every error kubeforge raises on purpose. ``str()`` is the one-line message."""

    exit_code = 1
    category = "error"

    def __init__(self, message: str, *, hint: str | None = None, unreachable: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Hosts that could not be reached behind this error. The CLI's one error boundary exits 5
        # for any error that names some, whatever its category (a refused upgrade, a failed check):
        # "unreachable" means one exit code everywhere.
        self.unreachable = tuple(unreachable)

    def __str__(self) -> str:
        return self.message


class UsageError(KubeforgeError):
    exit_code = 2
    category = "usage"


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in an input file, sortable by position.

    ``where`` is the dotted path inside the document (``hosts[2].roles``), ``line``/``col`` are
    1-based (0 when the problem is about the whole file).
    """

    file: str
    line: int
    col: int
    where: str
    message: str
    severity: str = field(default="error", compare=False)

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        where = f" {self.where}:" if self.where else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{loc}:{where} {prefix}{self.message}"


class InventoryError(KubeforgeError):
    """The inventory (or another input file) is invalid. Carries every problem found, sorted."""

    exit_code = 3
    category = "inventory"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(p for p in problems if p.severity == "error")
        self.warnings = sorted(p for p in problems if p.severity != "error")
        n = len(self.problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid inventory")
        self.summary = f"{n} problem{'s' if n != 1 else ''} in the inventory"


class InputError(KubeforgeError):
    """A file or argument other than the inventory is wrong (backup file, key file, flag value)."""

    exit_code = 3
    category = "input"


class CheckFailed(KubeforgeError):
    """Preflight or a health check found something wrong; nothing was changed."""

    exit_code = 4
    category = "check"


class TransportError(KubeforgeError):
    """A host could not be reached, authenticated, or verified."""

    exit_code = 5
    category = "transport"

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"[{host}] {message}", hint=hint, unreachable=(host,))
        self.host = host


class HostKeyError(TransportError):
    """The host presented an unknown or changed SSH host key."""


class CommandFailed(KubeforgeError):
    """A command on a host exited non-zero. The command shown is already masked."""

    exit_code = 6
    category = "command"

    def __init__(
        self, host: str, command: str, exit_status: int, stderr_tail: str, *, stdout_tail: str = ""
    ) -> None:
        tail = stderr_tail.strip() or stdout_tail.strip()
        msg = f"[{host}] `{command}` exited {exit_status}"
        if tail:
            msg += ": " + tail.splitlines()[-1][:300]
        super().__init__(msg)
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail


class ExecutionFailed(KubeforgeError):
    """A plan stopped because steps failed; the report says what was done and what was not."""

    exit_code = 6
    category = "execution"

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class SafetyRefusal(KubeforgeError):
    """kubeforge refuses an operation that would be unsafe (downgrade, skipped minor, quorum loss)."""

    exit_code = 7
    category = "refused"


class LockHeld(SafetyRefusal):
    """Another kubeforge run holds the cluster lock."""


class Interrupted(KubeforgeError):
    exit_code = 8
    category = "interrupted"

    def __init__(self, message: str = "interrupted", report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class CertificatesExpiring(KubeforgeError):
    exit_code = 9
    category = "certs"
