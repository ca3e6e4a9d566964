"""How an interrupted run reaches the commands it has running on hosts.

The executor runs each host's steps on a worker thread inside ``stop_on(event)``; every command a
transport runs on that thread watches the event. When it is set, a command not yet started is not
started, and one that is running is stopped on the host (SSH: a ``signal`` channel request for the
remote process group; local: the process group is signalled), then ``CommandStopped`` is raised.
Threads that are not inside ``stop_on`` (the main thread releasing the locks, for one) are never
stopped this way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kubeforge.errors import KubeforgeError

# How long a stopped command has to exit after SIGTERM before its channel is closed anyway. The
# host-side ``timeout -k 5`` kills what ignores SIGTERM, so this is a little longer than that.
STOP_WAIT_S = 8.0

_stop: ContextVar[threading.Event | None] = ContextVar("kubeforge_stop", default=None)


class CommandStopped(KubeforgeError):
    """The run was interrupted while this command ran (or before it could start); it was stopped
    on the host. Not a failure of the host: the step is rerun on --resume."""

    exit_code = 8
    category = "interrupted"

    def __init__(self, host: str, command: str, *, started: bool = True) -> None:
        what = "stopped on the host" if started else "not started"
        super().__init__(f"[{host}] `{command}` {what}: the run was interrupted")
        self.host = host
        self.command = command
        self.started = started


@contextmanager
def stop_on(event: threading.Event) -> Iterator[None]:
    """Commands run by this thread inside the block stop when ``event`` is set."""
    token = _stop.set(event)
    try:
        yield
    finally:
        _stop.reset(token)


def stop_event() -> threading.Event | None:
    """The event the current thread's commands watch, if any."""
    return _stop.get()
