"""Fault points: where in a workflow a fault strikes, and which kind.

A point is a step boundary counted in the interrupted run's own journal: ``after=N`` strikes the
moment its N-th step record is written (step N completed; the executor has already started the
next one). ``after_step`` instead names a step by the end of its id (the mixed-version etcd case
strikes after the first member restarted on 3.5). The full matrix: SIGINT at every boundary of the
upgrades and every 2nd elsewhere; each other kind at every 4th boundary of the upgrades and every
6th elsewhere (seeded offsets); and the mixed-version case.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("sigint", "sigterm", "sigkill", "ssh-cut", "power")
# The bar: SIGINT at every boundary of the upgrades; the other workflows (etcd install has
# 48 boundaries, members add 37) and the other kinds sampled, so the whole matrix fits in 2 hours.
EVERY_BOUNDARY = ("etcd-upgrade", "upgrade")
STRIDE = 4  # the other kinds, in the upgrades
SPARSE_STRIDE = 6  # the other kinds, elsewhere (and SIGINT at every 2nd boundary)
MIXED_VERSION = "mixed-version"
# issue 13: `certs rotate-ca` interrupted at each of its phase boundaries (where one phase's last step
# ended: every member done with a phase, each phase recorded in the store), beside the sampled ones
AT_PHASE_ENDS = ("etcd-rotate-ca",)


@dataclass(frozen=True)
class Point:
    workflow: str
    kind: str
    after: int = 0  # step records written before the fault
    after_step: str = ""  # or: the first step whose id ends with this
    label: str = ""

    @property
    def name(self) -> str:
        where = f"after {self.after_step}" if self.after_step else f"after step {self.after}"
        return f"{self.workflow} {self.kind} {where}" + (f" [{self.label}]" if self.label else "")


def mixed_version_point() -> Point:
    """Ctrl-C once the first member of the 3.4 -> 3.5 upgrade has restarted on 3.5 (issue 10)."""
    return Point("etcd-upgrade", "sigint", after_step="/restart-3.5.16", label=MIXED_VERSION)


def matrix(steps_of: dict[str, int], seed: int, phase_ends: dict[str, list[int]] | None = None) -> list[Point]:
    """Every point of the full matrix, for workflows whose uninterrupted run wrote ``steps_of[w]``
    step records (boundaries 1..n-1: after the last step there is nothing left to interrupt).
    ``phase_ends[w]``: the boundaries where a phase of ``w`` ended (SIGINT there too, for AT_PHASE_ENDS)."""
    rng = random.Random(seed)
    points: list[Point] = []
    for wf, n in steps_of.items():
        boundaries = list(range(1, n))
        every = wf in EVERY_BOUNDARY
        sigint = boundaries if every else boundaries[rng.randrange(2)::2]
        if wf in AT_PHASE_ENDS:
            sigint = sorted(set(sigint) | {b for b in (phase_ends or {}).get(wf, []) if 0 < b < n})
        points += [Point(wf, "sigint", b) for b in sigint]
        stride = STRIDE if every else SPARSE_STRIDE
        for kind in KINDS[1:]:
            points += [Point(wf, kind, b) for b in boundaries[rng.randrange(stride)::stride]]
        if wf == "etcd-upgrade":
            points.append(mixed_version_point())
    return points


def select(points: list[Point], *, workflows: list[str] | None, kind: str | None, sample: int | None,
           seed: int) -> list[Point]:
    """Filter by workflow and kind; with ``sample``, N points drawn with ``seed``: first one per
    workflow (and the mixed-version case whenever etcd-upgrade is in), then at random."""
    chosen = [p for p in points if (not workflows or p.workflow in workflows) and (kind is None or p.kind == kind)]
    if sample is None or sample >= len(chosen):
        return chosen
    rng = random.Random(seed)
    must = [p for p in chosen if p.label == MIXED_VERSION]
    for wf in dict.fromkeys(p.workflow for p in chosen):
        if not any(p.workflow == wf for p in must):
            must.append(rng.choice([p for p in chosen if p.workflow == wf and not p.label]))
    rest = [p for p in chosen if p not in must]
    extra = rng.sample(rest, max(0, min(len(rest), sample - len(must))))
    return must + extra


# The bar, within 2 hours: SIGINT at every boundary of both upgrades and the mixed-version
# case; beside them one point of every workflow's other points (the upgrades' other kinds too), and
# more drawn only while the whole bar has fewer than this many
BAR_POINTS = 100


def bar(points: list[Point], seed: int, at_least: int = 0) -> list[Point]:
    """The bar's points among ``points`` (one lab's part of the matrix): every SIGINT point of the
    upgrades, then from the rest, drawn with ``seed`` as a sample draws, one point per workflow and
    more only until ``at_least`` points in all (the last lab is given what the bar still lacks)."""
    every = [p for p in points if p.workflow in EVERY_BOUNDARY and p.kind == "sigint"]
    rest = [p for p in points if p not in every]
    if not rest:
        return every
    wanted = max(len({p.workflow for p in rest}), at_least - len(every))
    return every + select(rest, workflows=None, kind=None, sample=wanted, seed=seed)
