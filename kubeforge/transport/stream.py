"""Write a received stream to a file and hash it at the same time, off the receiving thread.

hashlib and file writes release the GIL on large buffers, so with one thread for each the receiver
(paramiko decrypting packets) keeps going while earlier chunks are hashed and written.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from typing import Protocol


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...

# Chunks in flight per consumer; chunks are at most a channel window (a few MiB) each.
DEPTH = 8


class HashingWriter:
    """``feed(chunk)`` from one thread; ``finish()`` returns (sha256 hex, size) once all is written."""

    def __init__(self, f: Writable) -> None:
        self._hasher = hashlib.sha256()
        self.size = 0
        self._errors: list[BaseException] = []
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        for consume in (f.write, self._hasher.update):
            q: queue.Queue = queue.Queue(maxsize=DEPTH)
            t = threading.Thread(target=self._drain, args=(q, consume), daemon=True, name="kf-get")
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    def _drain(self, q: queue.Queue, consume: Callable[[bytes], object]) -> None:
        while True:
            chunk = q.get()
            if chunk is None:
                return
            if not self._errors:
                try:
                    consume(chunk)
                except BaseException as exc:  # noqa: BLE001 - re-raised by finish() in the caller
                    self._errors.append(exc)

    def feed(self, chunk: bytes) -> None:
        if self._errors:
            raise self._errors[0]
        self.size += len(chunk)
        for q in self._queues:
            q.put(chunk)

    def close(self) -> None:
        """Stop the threads (idempotent); safe to call after a failure."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues = []
        self._threads = []

    def finish(self) -> tuple[str, int]:
        self.close()
        if self._errors:
            raise self._errors[0]
        return self._hasher.hexdigest(), self.size
