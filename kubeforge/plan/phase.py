"""Phases plan; they never execute. A Plan is pure data: what will run, in order, per host.

A phase (``UpgradeWorkers``, title "Upgrade workers") looks at the model and the facts gathered
before planning and returns a PhasePlan: host lanes of steps, or a no-op with the reason the hosts
have already converged. ``plan``, ``--dry-run``, the confirmation prompt and the executor all use
the very same Plan object.

Every workflow writes its phases one way (tests/unit/test_phase_style.py holds the line):

    class StopEtcd:
        name = "StopEtcd"                     # VerbObject, the class's own name
        title = "Stop etcd"                   # written once, here
        strategy = parallel()

        def title_for(self, ctx) -> str:      # only when the title names something of the run
            ...

        def plan(self, ctx) -> PhasePlan:
            return PhasePlan.of(self, lanes, title=self.title_for(ctx), reason_if_empty="...")

A phase planned once per member or hop (``AddEtcdMember-etcd-2``) is constructed with that
``instance``; its planner lists its phases in order (``PHASES``) and asks each for its plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubeforge.plan.steps import DescribedStep, Step
from kubeforge.plan.strategy import Strategy


class Phase(Protocol):
    name: str  # VerbObject: "UpgradeWorkers"
    title: str  # "Upgrade workers"
    strategy: Strategy
    # A phase planned once per member or hop sets ``instance`` ("etcd-2", "3.6.5"): its plans are
    # named "AddEtcdMember-etcd-2". Phases planned once per run leave it "".

    def plan(self, ctx: Any) -> PhasePlan: ...


def phase_name(phase: Phase) -> str:
    """The name its plans carry: ``AddEtcdMember-etcd-2`` for a phase planned per member."""
    instance = getattr(phase, "instance", "")
    return f"{phase.name}-{instance}" if instance else phase.name


@dataclass(frozen=True)
class HostLane:
    """The steps one host runs in a phase, in order."""

    host: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "steps": [s.to_dict() for s in self.steps]}


@dataclass(frozen=True)
class PhasePlan:
    name: str
    title: str
    strategy: Strategy
    lanes: tuple[HostLane, ...] = ()
    reason: str | None = None  # set when the phase has nothing to do, and why

    def __post_init__(self) -> None:
        if self.reason is None and not self.lanes:
            raise ValueError(f"phase {self.name}: a plan with no steps needs a reason")
        bound = tuple(
            HostLane(lane.host, tuple(s.bind(self.name) for s in lane.steps)) for lane in self.lanes
        )
        object.__setattr__(self, "lanes", bound)
        if self.strategy.kind == "rolling":
            ungated = [lane.host for lane in bound if not lane.steps or lane.steps[-1].kind != "gate"]
            if ungated:
                raise ValueError(f"phase {self.name} is rolling but {', '.join(ungated)} end without a readiness gate")
        hosts = [lane.host for lane in bound]
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"phase {self.name}: a host appears in two lanes")

    @classmethod
    def of(
        cls,
        phase: Phase,
        lanes: Iterable[tuple[str, Sequence[Step]]] = (),
        *,
        title: str = "",
        strategy: Strategy | None = None,
        reason_if_empty: str = "nothing to do",
    ) -> PhasePlan:
        """The plan of ``phase`` from ``(host, steps)`` pairs; hosts with no steps are dropped and a
        phase left with none becomes a no-op with ``reason_if_empty``. ``title``: the phase's
        ``title_for(ctx)`` where the title names something of the run."""
        name = phase_name(phase)
        title = title or phase.title
        strategy = strategy or phase.strategy
        kept = tuple(HostLane(h, tuple(steps)) for h, steps in lanes if steps)
        if not kept:
            return cls(name, title, strategy, (), reason_if_empty)
        return cls(name, title, strategy, kept)

    @classmethod
    def noop(cls, phase: Phase, reason: str) -> PhasePlan:
        return cls(phase_name(phase), phase.title, phase.strategy, (), reason)

    @property
    def is_noop(self) -> bool:
        return not self.lanes

    @property
    def steps(self) -> list[Step]:
        return [s for lane in self.lanes for s in lane.steps]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "strategy": self.strategy.to_dict(),
            "reason": self.reason,
            "hosts": [lane.to_dict() for lane in self.lanes],
        }


@dataclass(frozen=True)
class Plan:
    workflow: str  # "up", "upgrade 1.34.2", "etcd restore"
    phases: tuple[PhasePlan, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"two steps share the id {step.id!r}; give one of them a key")
            seen.add(step.id)

    @property
    def steps(self) -> list[Step]:
        return [s for p in self.phases for s in p.steps]

    @property
    def hosts(self) -> list[str]:
        out: list[str] = []
        for p in self.phases:
            for lane in p.lanes:
                if lane.host not in out:
                    out.append(lane.host)
        return out

    @property
    def is_noop(self) -> bool:
        return all(p.is_noop for p in self.phases)

    def summary(self) -> str:
        active = sum(1 for p in self.phases if not p.is_noop)
        n = len(self.steps)
        return (
            f"{self.workflow}: {n} step{'s' if n != 1 else ''} on {len(self.hosts)} host"
            f"{'s' if len(self.hosts) != 1 else ''} in {active} of {len(self.phases)} phases"
        )

    def render_text(self) -> str:
        """Per phase, per host, one line per step; no-op phases with their reason."""
        lines = [f"Plan {self.summary()}"]
        if self.is_noop:
            lines.append("Nothing to do: every host has converged.")
        for i, p in enumerate(self.phases, 1):
            if p.is_noop:
                lines.append(f"{i}. {p.title} — nothing to do: {p.reason}")
                continue
            lines.append(f"{i}. {p.title} ({p.strategy.describe()})")
            for lane in p.lanes:
                lines.append(f"   [{lane.host}]")
                lines.extend(f"     - {s.describe()}" for s in lane.steps)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "summary": self.summary(),
            "phases": [p.to_dict() for p in self.phases],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A plan read back from JSON, for showing and comparing; its steps cannot run."""
        phases = []
        for p in d["phases"]:
            lanes = tuple(
                HostLane(h["host"], tuple(DescribedStep(s) for s in h["steps"])) for h in p["hosts"]
            )
            phases.append(PhasePlan(p["name"], p["title"], Strategy.from_dict(p["strategy"]), lanes, p["reason"]))
        return cls(d["workflow"], tuple(phases))


def build_plan(workflow: str, phases: Sequence[Phase], ctx: Any) -> Plan:
    """Ask every phase for its plan, in order. Phases only read ``ctx`` (model, facts, secrets)."""
    return Plan(workflow, tuple(phase.plan(ctx) for phase in phases))
