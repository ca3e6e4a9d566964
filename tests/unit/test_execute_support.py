"""Helpers shared by the engine tests (no tests here): real LocalTransports rooted in tmp dirs and
steps that are real shell commands leaving evidence in files (timestamps, counters)."""

from __future__ import annotations

from pathlib import Path

from kubeforge.plan import HostLane, PhasePlan, Plan, RunStep, Strategy
from kubeforge.transport.base import Command
from kubeforge.transport.local import LocalTransport


def pool_for(tmp_path: Path, hosts: list[str]) -> dict[str, LocalTransport]:
    """A dict is a pool: ``pool.get(host)`` gives that host's transport (its files under tmp)."""
    return {h: LocalTransport(host=h, root=tmp_path / "hosts" / h) for h in hosts}


def timed_step(host: str, log: Path, *, seconds: float = 0.2, title: str = "Work", fail: bool = False) -> RunStep:
    """Appends '<host> start <t>' and '<host> end <t>' to ``log`` around a sleep; optionally fails."""
    script = (
        f'echo "{host} start $(date +%s.%N)" >> {log}\n'
        f"sleep {seconds}\n"
        f'echo "{host} end $(date +%s.%N)" >> {log}\n'
        + ("echo 'disk on fire' >&2; exit 3\n" if fail else "")
    )
    return RunStep(host, Command(script=script, timeout=30), title)


def counting_step(host: str, counter: Path, label: str, *, seconds: float = 0.0) -> RunStep:
    """Appends '<host> <label>' to ``counter`` each time it runs: a repeated step shows twice."""
    sleep = f"sleep {seconds}\n" if seconds else ""
    return RunStep(host, Command(script=f"{sleep}echo '{host} {label}' >> {counter}\n", timeout=30), f"Step {label}")


def intervals(log: Path) -> list[tuple[str, float, float]]:
    starts: dict[str, float] = {}
    out = []
    for line in log.read_text().splitlines():
        host, what, t = line.split()
        if what == "start":
            starts[host] = float(t)
        else:
            out.append((host, starts.pop(host), float(t)))
    return sorted(out, key=lambda x: x[1])


def max_overlap(spans: list[tuple[str, float, float]]) -> int:
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def one_phase_plan(strategy: Strategy, lanes: dict[str, list], *, name: str = "DoWork", workflow: str = "test") -> Plan:
    return Plan(workflow, (PhasePlan(name, "Do work", strategy, tuple(HostLane(h, tuple(s)) for h, s in lanes.items())),))


def counting_plan(counter: Path, hosts: list[str], steps_per_host: int, *, seconds: float = 0.0) -> Plan:
    """Two phases: a serial one over every host, then a parallel one; every step counts itself."""
    from kubeforge.plan import parallel, serial

    first = PhasePlan(
        "PrepareHosts",
        "Prepare hosts",
        serial(),
        tuple(HostLane(h, tuple(counting_step(h, counter, f"prep-{i}", seconds=seconds) for i in range(steps_per_host))) for h in hosts),
    )
    second = PhasePlan(
        "StartServices",
        "Start services",
        parallel(),
        tuple(HostLane(h, (counting_step(h, counter, "start", seconds=seconds),)) for h in hosts),
    )
    return Plan("counting", (first, second))
