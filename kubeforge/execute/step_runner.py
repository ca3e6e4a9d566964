"""How each kind of step runs over a Transport and becomes a StepResult (never raises for a host's
failure: the result says failed, with the masked command, exit status and stderr tail)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from kubeforge.errors import CommandFailed, KubeforgeError, TransportError
from kubeforge.execute.report import StepResult, StepStatus
from kubeforge.model.files import LocalFile
from kubeforge.model.secret import redact
from kubeforge.plan.steps import GateStep, GetFileStep, LocalStep, PutFileStep, RunStep, Step
from kubeforge.transport.base import Transport
from kubeforge.transport.cancel import CommandStopped

TAIL_LINES = 20


class Pool(Protocol):
    """Where the executor gets a connected Transport for a host (kubeforge.transport.pool)."""

    def get(self, host: str) -> Transport: ...


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return redact("\n".join(text.strip().splitlines()[-lines:]))


class StepRunner:
    def __init__(
        self,
        pool: Pool,
        *,
        clock: Callable[[], float] = time.monotonic,
        halt: threading.Event | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        # Set when the run is asked to stop: a gate stops waiting instead of polling on.
        self.halt = halt or threading.Event()

    def run(self, step: Step) -> StepResult:
        start = self.clock()
        try:
            status, extra = self._dispatch(step)
        except CommandStopped as exc:
            status, extra = StepStatus.INTERRUPTED, {"command": exc.command, "message": exc.message}
        except CommandFailed as exc:
            status, extra = StepStatus.FAILED, {
                "command": exc.command,
                "exit_status": exc.exit_status,
                "stderr_tail": tail(exc.stderr_tail or exc.stdout_tail),
                "message": redact(exc.message),
            }
        except KubeforgeError as exc:
            status, extra = StepStatus.FAILED, {"message": redact(exc.message)}
        except Exception as exc:  # noqa: BLE001 - a LocalStep's function or a transport bug: report, don't crash the run
            status, extra = StepStatus.FAILED, {"message": redact(f"{type(exc).__name__}: {exc}")}
        return StepResult(
            step_id=step.id,
            phase=getattr(step, "phase", ""),
            host=step.host,
            title=step.title,
            status=status,
            duration=self.clock() - start,
            **extra,
        )

    def _dispatch(self, step: Step) -> tuple[StepStatus, dict]:
        if isinstance(step, LocalStep):
            return (StepStatus.UNCHANGED if step.fn() is False else StepStatus.DONE), {}
        if isinstance(step, RunStep):
            return self._run(step)
        if isinstance(step, PutFileStep):
            f = step.file
            if isinstance(f, LocalFile):  # streamed from the operator's disk
                res = self.pool.get(step.host).put_file(  # type: ignore[attr-defined]
                    f.path, f.local, sha256=f.sha256, mode=f.mode, owner=f.owner, group=f.group
                )
            else:
                res = self.pool.get(step.host).put(
                    f.path, f.content, mode=f.mode, owner=f.owner, group=f.group, secret=f.secret
                )
            return (StepStatus.DONE if res.changed else StepStatus.UNCHANGED), {}
        if isinstance(step, GetFileStep):
            self.pool.get(step.host).get(step.remote, step.local, sudo=step.sudo)
            return StepStatus.DONE, {}
        if isinstance(step, GateStep):
            return self._gate(step)
        raise TypeError(f"cannot execute a {type(step).__name__}: a plan read from JSON only describes")

    def _run(self, step: RunStep) -> tuple[StepStatus, dict]:
        transport = self.pool.get(step.host)
        if step.unless is not None:
            guard = transport.run(replace(step.unless, check=False))
            if guard.ok:
                return StepStatus.UNCHANGED, {}
        res = transport.run(step.command)
        if res.exit_status != 0 and step.command.check:
            # A transport that returns instead of raising on a checked command still fails the step.
            return StepStatus.FAILED, {
                "command": res.command,
                "exit_status": res.exit_status,
                "stderr_tail": tail(res.stderr or res.stdout),
                "message": f"exited {res.exit_status}",
            }
        return StepStatus.DONE, {}

    def _gate(self, step: GateStep) -> tuple[StepStatus, dict]:
        transport = self.pool.get(step.host)
        probe = replace(step.probe, check=False)
        deadline = self.clock() + step.timeout_s
        last = ""
        while True:
            try:
                res = transport.run(probe)
                if res.ok:
                    return StepStatus.DONE, {}
                last = res.stderr or res.stdout
            except (TransportError, CommandFailed) as exc:
                # The host may be rebooting or the probe hung past its timeout: not ready yet.
                last = exc.message
            now = self.clock()
            if now >= deadline:
                return StepStatus.FAILED, {
                    "command": probe.display(),
                    "stderr_tail": tail(last, 5),
                    "message": f"timed out after {step.timeout_s:g}s waiting for {step.what}",
                }
            if self.halt.wait(min(step.interval_s, max(0.0, deadline - now))):
                return StepStatus.INTERRUPTED, {"message": f"interrupted while waiting for {step.what}"}
