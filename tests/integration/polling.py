"""Watch something from outside while a command runs: a thread calls a probe at an interval."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def while_polling(probe: Callable[[], str | None], action: Callable[[], T], interval: float) -> tuple[T, int, list[str]]:
    """Run ``action`` while ``probe`` is called every ``interval`` seconds (it returns None when the
    thing watched answered, else why not). Returns the action's result, the number of probes and
    the failures."""
    polls, failures = [0], []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            why = probe()
            polls[0] += 1
            if why is not None:
                failures.append(why)
            stop.wait(interval)

    watcher = threading.Thread(target=loop, daemon=True)
    watcher.start()
    try:
        result = action()
    finally:
        stop.set()
        watcher.join(timeout=60)
    return result, polls[0], failures
