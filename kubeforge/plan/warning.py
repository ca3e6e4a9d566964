"""WarnOperator: a phase that only warns. The operator sees it in the plan, and the run log keeps it
when the run passes it (the step reports unchanged: nothing on any host changed).

    class AcceptOlderPatch(WarnOperator):      # a workflow's own warning, listed in its PHASES
        name = "AcceptOlderPatch"
        def message(self, ctx) -> str: ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import LocalStep
from kubeforge.plan.strategy import serial


def warn_step_fn(message: str, log: logging.Logger) -> Callable[[], bool]:
    """A local step's function that logs ``message`` as a warning and reports nothing changed."""

    def fn() -> bool:
        log.warning(message)
        return False  # nothing changed: reported unchanged, the warning stays in the run log

    return fn


class WarnOperator:
    name = "WarnOperator"
    title = "Warning"
    strategy = serial()
    log = logging.getLogger("kubeforge.plan")

    def message(self, ctx: Any) -> str:
        """What to warn of; the base class is handed the message itself."""
        return str(ctx)

    def title_for(self, ctx: Any) -> str:
        return f"Warning: {self.message(ctx)}"

    def plan(self, ctx: Any) -> PhasePlan:
        message = self.message(ctx)
        step = LocalStep(f"Warning: {message}", warn_step_fn(message, self.log), key="warning")
        return PhasePlan.of(self, [("local", [step])], title=self.title_for(ctx))
