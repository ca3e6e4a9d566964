"""The dry-run executor: walks the same Plan the real executor would run and says what would run,
phase by phase, host by host. It is given no pool, so it holds no transport at all: it cannot change
a host even by mistake. Facts were gathered (read-only) before planning, so there is nothing to ask."""

from __future__ import annotations

import time

from kubeforge.execute.events import Events
from kubeforge.execute.report import Report, StepResult, StepStatus
from kubeforge.plan.phase import Plan
from kubeforge.plan.steps import done_earlier


class DryRunExecutor:
    def __init__(self, *, events: Events | None = None, done_before: frozenset[str] = frozenset()) -> None:
        self.events = events or Events()
        # With --resume, steps an earlier attempt finished are shown as such.
        self.done_before = done_before

    def run(self, plan: Plan) -> Report:
        started = time.monotonic()
        self.events.plan_started(plan, dry_run=True)
        results: list[StepResult] = []
        for phase in plan.phases:
            if phase.is_noop:
                self.events.phase_skipped(phase)
                continue
            self.events.phase_started(phase)
            for lane in phase.lanes:
                for step in lane.steps:
                    status = StepStatus.EARLIER if done_earlier(step, self.done_before) else StepStatus.PLANNED
                    self.events.step_started(step)
                    result = StepResult(step.id, phase.name, step.host, step.title, status, command=step.describe())
                    results.append(result)
                    self.events.step_finished(step, result)
            self.events.phase_finished(phase)
        report = Report(plan.workflow, outcome="dry-run", results=results, duration=time.monotonic() - started)
        self.events.plan_finished(report)
        return report
