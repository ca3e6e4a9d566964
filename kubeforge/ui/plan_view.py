"""Print a Plan: derived from the very Plan object that will run, never a hand-written summary."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from kubeforge.model.secret import redact
from kubeforge.plan.phase import Plan

_KIND_STYLE = {"run": "cyan", "put": "green", "get": "green", "gate": "yellow", "local": "magenta"}


def plan_lines(plan: Plan) -> list[Text]:
    lines = [Text(f"Plan {plan.summary()}", style="bold")]
    if plan.is_noop:
        lines.append(Text("Nothing to do: every host has converged.", style="green"))
    for i, phase in enumerate(plan.phases, 1):
        if phase.is_noop:
            line = Text(f"{i}. {phase.title}", style="dim")
            line.append(f" — nothing to do: {phase.reason}", style="dim")
            lines.append(line)
            continue
        head = Text(f"{i}. {phase.title}", style="bold")
        head.append(f" ({phase.strategy.describe()})", style="dim")
        lines.append(head)
        for lane in phase.lanes:
            lines.append(Text(f"   [{lane.host}]", style="bold blue"))
            for step in lane.steps:
                line = Text("     ")
                line.append(f"{step.kind:<5} ", style=_KIND_STYLE.get(step.kind, ""))
                line.append(redact(step.describe()))
                lines.append(line)
    return lines


def print_plan(console: Console, plan: Plan) -> None:
    for line in plan_lines(plan):
        console.print(line)
