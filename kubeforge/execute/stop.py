"""What a run does when it is asked to stop: SIGINT (Ctrl-C), SIGTERM (a supervisor, `kill`),
SIGHUP (the operator's terminal or SSH session closed).

- Every one of them: no step starts any more, anywhere.
- SIGTERM and SIGHUP stop the steps that are running as well: their commands are stopped on the
  hosts (kubeforge.transport.cancel), so nothing of the run goes on after kubeforge has exited.
- SIGINT lets the running steps end, so what they did is journaled as done; a second signal of any
  kind stops them too.

Then the engine journals what ended, releases the locks, saves and prints the report and exits 8.
The handlers are installed only for the locked part of a run (kubeforge.execute.engine).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# These mean "go away now": nobody is there to wait for a step, or a supervisor will not wait.
STOP_RUNNING = (signal.SIGTERM, signal.SIGHUP)


class Stop:
    """Thread-safe flags the executor and the transports look at."""

    def __init__(self) -> None:
        self.halt = threading.Event()  # start nothing new
        self.kill = threading.Event()  # stop the commands that are running
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.halt.is_set()

    def request(self, signum: int) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        if self.halt.is_set() or signum in STOP_RUNNING:
            self.kill.set()
        self.halt.set()

    def reason(self) -> str:
        return f"interrupted by {self.signal_name or 'a signal'}"

    @contextmanager
    def handling_signals(self) -> Iterator[Stop]:
        """Turn SIGINT, SIGTERM and SIGHUP into requests to this object while the block runs (only
        the main thread can; elsewhere, as in a test's worker thread, nothing is installed)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        self.request(signum)
