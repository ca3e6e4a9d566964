"""How a phase's hosts are ordered and grouped when it runs.

A strategy cuts the phase's host lanes into batches. Batches run one after another; inside a batch
up to ``limit`` hosts run at once, each host's steps in order. On a failure a strategy either stops
at once (``finish_batch=False``: nothing new starts anywhere; the steps already running end) or lets
the hosts of the current batch finish (``finish_batch=True``), then stops. Control-plane and etcd
phases stop at once; worker batches finish the batch, so the report says exactly who failed and who
was never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Strategy:
    kind: str
    limit: int | None = None  # hosts at once inside a batch; None: the whole batch
    size: str | None = None  # batch size for "batched": a count ("2") or a percentage ("25%")
    finish_batch: bool = False

    def batch_size(self, n_hosts: int) -> int:
        if n_hosts <= 0:
            return 0
        if self.kind in ("serial", "rolling"):
            return 1
        if self.kind == "parallel":
            return n_hosts
        spec = (self.size or "1").strip()
        if spec.endswith("%"):
            n = int(n_hosts * float(spec[:-1]) / 100)
        else:
            n = int(spec)
        return max(1, min(n_hosts, n))

    def batches(self, lanes: Sequence[T]) -> list[list[T]]:
        """The lanes (one per host, in plan order) cut into consecutive batches."""
        size = self.batch_size(len(lanes))
        return [list(lanes[i : i + size]) for i in range(0, len(lanes), size)] if size else []

    def concurrency(self, batch_len: int) -> int:
        return max(1, min(batch_len, self.limit or batch_len))

    def describe(self) -> str:
        if self.kind == "parallel":
            return f"parallel, {self.limit} at a time" if self.limit else "parallel"
        if self.kind == "batched":
            return f"batches of {self.size}"
        if self.kind == "rolling":
            return "one host at a time, gated"
        return "one host at a time"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "limit": self.limit, "size": self.size, "finish_batch": self.finish_batch}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Strategy:
        return cls(kind=d["kind"], limit=d.get("limit"), size=d.get("size"), finish_batch=d.get("finish_batch", False))


def serial() -> Strategy:
    """One host after another; the first failure stops the phase."""
    return Strategy("serial", limit=1)


def parallel(limit: int | None = None, *, finish_batch: bool = False) -> Strategy:
    """Every host at once (at most ``limit``); the first failure stops new work everywhere unless
    ``finish_batch`` lets the others run to their end (useful when hosts are independent)."""
    if limit is not None and limit < 1:
        raise ValueError("parallel limit must be at least 1")
    return Strategy("parallel", limit=limit, finish_batch=finish_batch)


def batched(size: str | int, *, limit: int | None = None) -> Strategy:
    """Batches of ``size`` hosts ("2") or of a share of them ("25%"); a failing batch finishes."""
    spec = str(size).strip()
    number = spec[:-1] if spec.endswith("%") else spec
    try:
        ok = float(number) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"batch size must be a positive count or percentage, not {size!r}")
    return Strategy("batched", limit=limit, size=spec, finish_batch=True)


def rolling() -> Strategy:
    """One host at a time, each ending with a readiness gate (see ``with_gates``)."""
    return Strategy("rolling", limit=1)


def with_gates(lanes: Sequence[tuple[str, Sequence[Any]]], gate: Callable[[str], Any]) -> list[tuple[str, list[Any]]]:
    """Append ``gate(host)`` (a GateStep) to every host's steps, so a rolling phase's gates are in
    the plan like every other step: printed, journaled and resumable."""
    return [(host, [*steps, gate(host)]) for host, steps in lanes]
