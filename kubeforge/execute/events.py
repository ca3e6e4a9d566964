"""How the executors tell the outside world what they are doing, without knowing who listens.

The UI's live progress and plain-line printers subclass ``Events``; tests record into a list. Calls
come from worker threads, one per running host, so listeners must be thread-safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeforge.execute.report import Report, StepResult
    from kubeforge.plan.phase import PhasePlan, Plan
    from kubeforge.plan.steps import Step


class Events:
    """Every hook does nothing; override the ones you need."""

    def plan_started(self, plan: Plan, *, dry_run: bool = False) -> None: ...

    def phase_started(self, phase: PhasePlan) -> None: ...

    def phase_skipped(self, phase: PhasePlan) -> None:
        """A no-op phase; ``phase.reason`` says why."""

    def step_started(self, step: Step) -> None: ...

    def step_finished(self, step: Step, result: StepResult) -> None: ...

    def phase_finished(self, phase: PhasePlan) -> None: ...

    def plan_finished(self, report: Report) -> None: ...


class Recorder(Events):
    """Keeps every event as a tuple; handy for tests and for a machine-readable event stream."""

    def __init__(self) -> None:
        import threading

        self.events: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *item: object) -> None:
        with self._lock:
            self.events.append(item)

    def plan_started(self, plan, *, dry_run=False):
        self._add("plan", plan.workflow, dry_run)

    def phase_started(self, phase):
        self._add("phase", phase.name)

    def phase_skipped(self, phase):
        self._add("skip", phase.name, phase.reason)

    def step_started(self, step):
        self._add("start", step.id)

    def step_finished(self, step, result):
        self._add("end", step.id, result.status.value)

    def plan_finished(self, report):
        self._add("finish", report.outcome)
