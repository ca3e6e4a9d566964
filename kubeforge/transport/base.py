"""The one Transport protocol and the results it returns.

``Transport`` holds the policy (masking, logging, timing, errors with host + masked command + exit
code + stderr tail); implementations (SSH over paramiko, local) provide only primitives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kubeforge.model.secret import Secret


@dataclass(frozen=True)
class Command:
    """A command as data. ``argv`` is quoted for the shell by the transport; ``script`` runs under
    ``bash -euo pipefail``. Secrets go in ``stdin`` or ``env`` (as Secret), never in argv."""

    argv: Sequence[str] | None = None
    script: str | None = None
    sudo: bool = False
    timeout: float | None = 300.0
    env: Mapping[str, str | Secret] = field(default_factory=dict)
    stdin: bytes | Secret | None = None
    check: bool = True  # raise CommandFailed on non-zero exit
    description: str = ""  # what it does, for logs and plans

    def display(self) -> str:
        """The command as it may be printed: env values that are Secrets are masked."""
        import shlex

        if self.script is not None:
            body = self.script.strip().splitlines()
            shown = body[0] + (f" … (+{len(body) - 1} lines)" if len(body) > 1 else "")
        else:
            shown = " ".join(shlex.quote(a) for a in (self.argv or ()))
        prefix = "sudo " if self.sudo else ""
        return prefix + shown


@dataclass(frozen=True)
class RunResult:
    host: str
    command: str  # masked display form
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class PutResult:
    host: str
    path: str
    changed: bool  # False when the remote sha256 already matched
    sha256: str
    size: int
    duration: float


@dataclass(frozen=True)
class GetResult:
    host: str
    remote_path: str
    local_path: str
    sha256: str
    size: int
    duration: float


@runtime_checkable
class Transport(Protocol):
    """What every layer above uses to reach a host."""

    host: str  # the inventory name

    def run(self, command: Command) -> RunResult: ...

    def put(
        self,
        path: str,
        content: bytes,
        *,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secret: bool = False,
    ) -> PutResult: ...

    def get(self, remote_path: str, local_path: str, *, sudo: bool = True) -> GetResult: ...

    def stream(self, remote_path: str, write: Callable[[bytes], object], *, sudo: bool = True) -> GetResult: ...

    def close(self) -> None: ...
