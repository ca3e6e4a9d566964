"""Show the plan, ask (or ``--yes``), then run exactly that Plan object.

The asking is the UI's job (``kubeforge.ui.confirm.Confirmer``); workflows receive it as a plain
callable so they never import the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kubeforge.execute.report import Report
from kubeforge.plan.phase import Plan


class Runner(Protocol):
    def run(self, plan: Plan) -> Report: ...


def run_confirmed(plan: Plan, runner: Runner, confirm: Callable[[Plan], bool]) -> Report | None:
    """``None`` when the operator declined: nothing ran. A plan with nothing to do is not asked
    about; it runs (instantly) so the report says every host has converged."""
    if not plan.is_noop and not confirm(plan):
        return None
    return runner.run(plan)
