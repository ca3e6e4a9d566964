"""Steps are data: what one host (or the operator's machine) will do, and nothing else.

A step never runs itself; the executor (or the dry-run executor) interprets it. Every step has a
stable ``id`` built from its phase, its host and a content key, so the journal of an interrupted run
matches the steps of a freshly planned one even when other steps were added or dropped around it.
``describe()`` is the one line a plan prints: secrets show as ``***`` and files as path, mode and a
sha256 prefix, never their content.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Self

from kubeforge.model.files import LocalFile, RenderedFile
from kubeforge.model.secret import Secret
from kubeforge.transport.base import Command

# The lane name of steps that run on the operator's machine rather than on a host.
LOCAL = "local"

_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:48] or "step"


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:8]


def command_fingerprint(command: Command) -> str:
    """What a command does, for ids: argv or script, sudo, env names. Never a secret's value."""
    env = ",".join(
        f"{k}={'***' if isinstance(v, Secret) else v}" for k, v in sorted(command.env.items())
    )
    body = command.script if command.script is not None else "\0".join(command.argv or ())
    return _digest(body, str(command.sudo), env)


def command_to_dict(command: Command) -> dict[str, Any]:
    stdin: str | None
    if command.stdin is None:
        stdin = None
    elif isinstance(command.stdin, Secret):
        stdin = "***"
    else:
        stdin = f"<{len(command.stdin)} bytes>"
    return {
        "argv": list(command.argv) if command.argv is not None else None,
        "script": command.script,
        "sudo": command.sudo,
        "timeout": command.timeout,
        "env": {k: ("***" if isinstance(v, Secret) else v) for k, v in command.env.items()},
        "stdin": stdin,
        "check": command.check,
        "display": command.display(),
    }


@dataclass(frozen=True)
class _StepBase:
    # Filled in by PhasePlan when the step joins a phase; part of the id.
    phase: str = field(default="", kw_only=True)
    # An explicit content key; by default one is derived from the title and the content.
    key: str = field(default="", kw_only=True)
    # A lease renewed rather than a change made once (kubeadm's uploaded certificates live 2 h, a
    # bootstrap token 24 h): planned from fresh facts on every attempt, it runs again on --resume even
    # when an earlier attempt of the run journaled it done.
    repeat_on_resume: bool = field(default=False, kw_only=True)

    kind = "step"

    @property
    def id(self) -> str:
        return f"{self.phase}/{self.host}/{self.key or self.content_key()}"  # type: ignore[attr-defined]

    def content_key(self) -> str:
        raise NotImplementedError

    def bind(self, phase: str) -> Self:
        return replace(self, phase=phase)

    def base_dict(self) -> dict[str, Any]:
        d = {
            "kind": self.kind,
            "id": self.id,
            "host": self.host,  # type: ignore[attr-defined]
            "title": self.title,  # type: ignore[attr-defined]
            "line": self.describe(),  # type: ignore[attr-defined]
        }
        if self.repeat_on_resume:
            d["repeat_on_resume"] = True
        return d


def done_earlier(step: Any, done_before: frozenset[str]) -> bool:
    """A resumed run skips what its journal has as done, except a step that renews a lease."""
    return step.id in done_before and not getattr(step, "repeat_on_resume", False)


@dataclass(frozen=True)
class RunStep(_StepBase):
    """Run one command on a host. ``unless``: a read-only check; when it succeeds the host has
    already converged and the step is reported unchanged without running ``command``."""

    host: str
    command: Command
    title: str
    unless: Command | None = None
    kind = "run"

    def content_key(self) -> str:
        return f"{slug(self.title)}-{command_fingerprint(self.command)}"

    def describe(self) -> str:
        env = "".join(f"{k}={'***' if isinstance(v, Secret) else v} " for k, v in self.command.env.items())
        stdin = " <secret stdin>" if isinstance(self.command.stdin, Secret) else ""
        guard = f"  (unless: {self.unless.display()})" if self.unless is not None else ""
        return f"{self.title}: {env}{self.command.display()}{stdin}{guard}"

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d["command"] = command_to_dict(self.command)
        d["unless"] = command_to_dict(self.unless) if self.unless is not None else None
        return d


@dataclass(frozen=True)
class PutFileStep(_StepBase):
    """Place a rendered file on a host (atomically; the transport skips it when sha256 matches).
    A LocalFile is streamed from the operator's disk instead of held in memory."""

    host: str
    file: RenderedFile | LocalFile
    title: str = ""
    kind = "put"

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", f"Write {self.file.path}")

    def content_key(self) -> str:
        # The content is part of the id: a file rendered anew between attempts (a rotated bootstrap
        # token in the kubeadm configs) is written again on --resume, never skipped as done earlier.
        return f"put-{slug(self.file.path)}-{_digest(self.file.path, self.file.sha256)}"

    def describe(self) -> str:
        f = self.file
        secret = ", secret" if f.secret else ""
        return f"{self.title}: {f.path} mode {f.mode:04o} {f.owner}:{f.group} sha256:{f.sha256[:12]} ({f.size} bytes{secret})"

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        f = self.file
        d["file"] = {
            "path": f.path,
            "mode": f"{f.mode:04o}",
            "owner": f.owner,
            "group": f.group,
            "sha256": f.sha256,
            "size": f.size,
            "secret": f.secret,
            "source": f.source,
        }
        return d


@dataclass(frozen=True)
class GetFileStep(_StepBase):
    """Fetch a file from a host to the operator's machine (streamed, checksummed)."""

    host: str
    remote: str
    local: str
    title: str = ""
    sudo: bool = True
    kind = "get"

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", f"Fetch {self.remote}")

    def content_key(self) -> str:
        return f"get-{slug(self.remote)}-{_digest(self.remote, self.local)}"

    def describe(self) -> str:
        return f"{self.title}: {self.remote} -> {self.local}"

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d.update(remote=self.remote, local=self.local, sudo=self.sudo)
        return d


@dataclass(frozen=True)
class GateStep(_StepBase):
    """A readiness gate: poll a read-only probe until it succeeds, or fail after ``timeout_s``
    saying what was being waited for (``what``: "node cp-1 Ready", "etcd healthy on 3 members")."""

    host: str
    probe: Command
    title: str
    what: str
    timeout_s: float = 300.0
    interval_s: float = 2.0
    kind = "gate"

    def content_key(self) -> str:
        return f"gate-{slug(self.title)}-{command_fingerprint(self.probe)}"

    def describe(self) -> str:
        return f"{self.title}: wait up to {self.timeout_s:g}s for {self.what} ({self.probe.display()})"

    def to_dict(self) -> dict[str, Any]:
        d = self.base_dict()
        d.update(
            probe=command_to_dict(self.probe),
            what=self.what,
            timeout_s=self.timeout_s,
            interval_s=self.interval_s,
        )
        return d


@dataclass(frozen=True)
class LocalStep(_StepBase):
    """Work driven from the operator's machine (write admin.conf, record state, stream a snapshot).
    ``fn()`` returns False when nothing needed changing (reported unchanged), anything else means
    done. ``key`` should be given: a function has no content to derive one from. ``reaches``: the
    hosts the function acts on over SSH, when it does (the plan says so instead of "on this
    machine" only)."""

    title: str
    fn: Callable[[], Any] = field(compare=False, repr=False)
    host: str = LOCAL
    reaches: str = ""
    kind = "local"

    def content_key(self) -> str:
        return f"local-{slug(self.title)}"

    def describe(self) -> str:
        if self.reaches:
            return f"{self.title} (from this machine, on {self.reaches})"
        return f"{self.title} (on this machine)"

    def to_dict(self) -> dict[str, Any]:
        return self.base_dict()


@dataclass(frozen=True)
class DescribedStep:
    """A step read back from a plan's JSON: it describes, it cannot run (a JSON plan holds neither
    secrets nor file contents). ``to_dict()`` gives back exactly what it was read from."""

    data: dict[str, Any] = field(hash=False)
    kind = "described"

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def host(self) -> str:
        return self.data["host"]

    @property
    def title(self) -> str:
        return self.data["title"]

    @property
    def repeat_on_resume(self) -> bool:
        return bool(self.data.get("repeat_on_resume"))

    def bind(self, phase: str) -> DescribedStep:
        return self

    def describe(self) -> str:
        return self.data.get("line") or self.data["title"]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


Step = RunStep | PutFileStep | GetFileStep | GateStep | LocalStep | DescribedStep
