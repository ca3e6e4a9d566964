"""One transport per host for the run, and bounded parallel fan-out with per-host outcomes.

Every host ends in exactly one state: succeeded, failed (host, masked command, exit code, stderr
tail), or not reached (connect failed, or never started because an earlier failure stopped the
fan-out). One host's success never hides another's failure: the result lists them all.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubeforge.errors import CommandFailed, ExecutionFailed, KubeforgeError, TransportError
from kubeforge.model.cluster import Cluster, Host
from kubeforge.transport.base import Transport
from kubeforge.transport.policy import ConnectionLost

log = logging.getLogger("kubeforge.transport")

T = TypeVar("T")
DEFAULT_LIMIT = 30


class Status(str, enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_REACHED = "not reached"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    value: Any = None  # what the function returned, when it succeeded
    error: BaseException | None = None
    message: str = ""  # one line: why it failed or was not reached
    command: str | None = None  # masked, when a command failed
    exit_status: int | None = None
    stderr_tail: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


@dataclass(frozen=True)
class FanoutResult(Generic[T]):
    outcomes: tuple[HostOutcome, ...]  # in the order the hosts were given
    duration: float = 0.0

    def _with(self, status: Status) -> tuple[HostOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status is status)

    @property
    def succeeded(self) -> tuple[HostOutcome, ...]:
        return self._with(Status.SUCCEEDED)

    @property
    def failed(self) -> tuple[HostOutcome, ...]:
        return self._with(Status.FAILED)

    @property
    def not_reached(self) -> tuple[HostOutcome, ...]:
        return self._with(Status.NOT_REACHED)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def __getitem__(self, host: str) -> HostOutcome:
        for o in self.outcomes:
            if o.host == host:
                return o
        raise KeyError(host)

    def values(self) -> dict[str, Any]:
        return {o.host: o.value for o in self.outcomes if o.ok}

    def render_text(self) -> str:
        lines = []
        for o in self.outcomes:
            line = f"[{o.host}] {o.status}"
            if o.message:
                line += f": {o.message}"
            lines.append(line)
        return "\n".join(lines)

    def raise_for_failures(self, what: str = "fan-out") -> FanoutResult[T]:
        """Raise ExecutionFailed (carrying this result as its report) unless every host succeeded."""
        if not self.ok:
            raise ExecutionFailed(
                f"{what}: {len(self.succeeded)} succeeded, {len(self.failed)} failed, "
                f"{len(self.not_reached)} not reached",
                report=self,
            )
        return self


def _name(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Host):
        return item.name
    host = getattr(item, "host", None)
    return host if isinstance(host, str) else str(item)


def outcome_of_error(host: str, exc: BaseException, duration: float) -> HostOutcome:
    if isinstance(exc, TransportError) and not isinstance(exc, ConnectionLost):
        return HostOutcome(host, Status.NOT_REACHED, error=exc, message=str(exc), duration=duration)
    if isinstance(exc, CommandFailed):
        return HostOutcome(
            host, Status.FAILED, error=exc, message=str(exc), command=exc.command,
            exit_status=exc.exit_status, stderr_tail=exc.stderr_tail, duration=duration,
        )
    if isinstance(exc, KubeforgeError):
        return HostOutcome(host, Status.FAILED, error=exc, message=str(exc), duration=duration)
    # A bug in the function: keep it as this host's failure so the others still report.
    return HostOutcome(host, Status.FAILED, error=exc, message=f"unexpected {type(exc).__name__}: {exc}", duration=duration)


def fanout(
    items: Iterable[T],
    fn: Callable[[T], Any],
    *,
    limit: int = DEFAULT_LIMIT,
    stop_on_first_failure: bool = False,
) -> FanoutResult:
    """Call ``fn(item)`` for every item on at most ``limit`` threads at once.

    ``stop_on_first_failure``: after the first failure no further host is started (those report
    "not reached"); hosts already running finish. Use it where one failure makes the rest unsafe
    (control planes, etcd members).
    """
    items = list(items)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    stop = threading.Event()
    first_failure: list[str] = []
    started = time.monotonic()

    def one(item: T) -> HostOutcome:
        host = _name(item)
        if stop.is_set():
            return HostOutcome(host, Status.NOT_REACHED, message=f"not started: stopped after {first_failure[0]} failed")
        t0 = time.monotonic()
        try:
            value = fn(item)
        except Exception as exc:  # noqa: BLE001 - each host's error becomes its outcome
            out = outcome_of_error(host, exc, time.monotonic() - t0)
            log.debug("%s: %s", out.status, out.message, extra={"host": host})
            if stop_on_first_failure and not stop.is_set():
                first_failure.append(host)
                stop.set()
            return out
        return HostOutcome(host, Status.SUCCEEDED, value=value, duration=time.monotonic() - t0)

    if not items:
        return FanoutResult((), 0.0)
    with ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="kf-fanout") as pool:
        futures = [pool.submit(one, item) for item in items]
        try:
            outcomes = tuple(f.result() for f in futures)
        except KeyboardInterrupt:
            stop.set()
            first_failure.append("interrupt")
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return FanoutResult(outcomes, time.monotonic() - started)


def _ssh_factory(host: Host) -> Transport:
    from kubeforge.transport.ssh import SshTransport

    return SshTransport(host)


class TransportPool:
    """One transport per host, created on first use and closed together at the end of the run."""

    def __init__(self, cluster: Cluster, *, factory: Callable[[Host], Transport] = _ssh_factory) -> None:
        self.cluster = cluster
        self.factory = factory
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def get(self, host: Host | str) -> Transport:
        name = host if isinstance(host, str) else host.name
        with self._lock:
            t = self._transports.get(name)
            if t is None:
                t = self.factory(self.cluster.host(name) if isinstance(host, str) else host)
                self._transports[name] = t
            return t

    def reconnect(self, host: str) -> Transport:
        """A new transport for ``host`` in place of its current one (closed): for work that must
        still be done after a connection was cut under the run, such as releasing the cluster lock."""
        with self._lock:
            old = self._transports.pop(host, None)
        if old is not None:
            try:
                old.close()
            except Exception as exc:  # noqa: BLE001 - it is broken already
                log.debug("close failed: %s", exc, extra={"host": host})
        return self.get(host)

    def fanout(
        self,
        hosts: Sequence[Host] | None,
        fn: Callable[[Transport], Any],
        *,
        limit: int | None = None,
        stop_on_first_failure: bool = False,
    ) -> FanoutResult:
        """``fn(transport)`` on every host (all hosts when None), ``cluster.parallelism`` at once."""
        hosts = self.cluster.hosts if hosts is None else hosts
        return fanout(
            hosts,
            lambda h: fn(self.get(h)),
            limit=limit or self.cluster.parallelism,
            stop_on_first_failure=stop_on_first_failure,
        )

    def close(self) -> None:
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        for t in transports:
            try:
                t.close()
            except Exception as exc:  # noqa: BLE001 - closing must reach every host
                log.debug("close failed: %s", exc, extra={"host": t.host})

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
