"""The executor: runs a Plan's phases in order over Transports, host lanes per the phase strategy.

Each host's steps run in order on a worker thread; a batch's hosts run at once up to the
strategy's limit. On a failure nothing new starts (``finish_batch`` phases first let the hosts of
the current batch finish), later phases are not reached, and ``ExecutionFailed`` carries a report
in which every planned step appears once. Ctrl-C starts nothing new either: steps already running
end, the journal keeps what completed, and ``Interrupted`` carries the report. Steps the journal of
a resumed run has as done are skipped, never repeated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from kubeforge.errors import ExecutionFailed, Interrupted
from kubeforge.execute.events import Events
from kubeforge.execute.journal import Journal
from kubeforge.execute.report import Report, StepResult, StepStatus
from kubeforge.execute.step_runner import Pool, StepRunner
from kubeforge.plan.phase import HostLane, PhasePlan, Plan
from kubeforge.plan.steps import DescribedStep, Step

# Every step goes to the run's log file at debug level; the console hears about it through Events.
log = logging.getLogger("kubeforge.execute")

# How often the main thread wakes while waiting for workers, so Ctrl-C is handled promptly.
_POLL_S = 0.05


def not_reached(step: Step, status: StepStatus = StepStatus.NOT_REACHED) -> StepResult:
    return StepResult(step.id, getattr(step, "phase", ""), step.host, step.title, status)


class _Batch:
    """One batch of host lanes running on worker threads; the main thread only waits."""

    def __init__(self, executor: "Executor", phase: PhasePlan, lanes: list[HostLane]) -> None:
        self.ex = executor
        self.phase = phase
        self.todo: queue.Queue[HostLane] = queue.Queue()
        for lane in lanes:
            self.todo.put(lane)
        self.threads = [
            threading.Thread(target=self._work, name=f"kubeforge-{phase.name}-{i}", daemon=True)
            for i in range(phase.strategy.concurrency(len(lanes)))
        ]
        self.alive = len(self.threads)
        # Workers say they are done through an Event, not Thread.join: a join interrupted by
        # Ctrl-C can leave a thread looking finished while it still runs (CPython < 3.13).
        self.finished = threading.Event()

    def _work(self) -> None:
        try:
            while True:
                try:
                    lane = self.todo.get_nowait()
                except queue.Empty:
                    return
                self._run_lane(lane)
        finally:
            with self.ex.lock:
                self.alive -= 1
                if self.alive == 0:
                    self.finished.set()

    def _run_lane(self, lane: HostLane) -> None:
        ex = self.ex
        for step in lane.steps:
            if step.id in ex.done_before:
                ex.settle(step, not_reached(step, StepStatus.EARLIER), journal=False)
                continue
            if ex.must_halt(self.phase):
                return  # this step and the rest of the lane stay "not reached"
            with ex.lock:
                ex.running += 1
                ex.max_running = max(ex.max_running, ex.running)
            ex.events.step_started(step)
            log.debug("%s: start %s", step.id, step.describe(), extra={"host": step.host})
            result = ex.runner.run(step)
            with ex.lock:
                ex.running -= 1
            ex.settle(step, result)
            if result.status is StepStatus.FAILED:
                ex.failed.set()
                return
            if result.status is StepStatus.NOT_REACHED:  # a gate gave up on Ctrl-C
                return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait(self) -> None:
        while not self.finished.wait(_POLL_S):
            pass


class Executor:
    """Runs a Plan for real. ``pool.get(host)`` gives the Transport of a host."""

    def __init__(
        self,
        pool: Pool,
        *,
        journal: Journal | None = None,
        events: Events | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.journal = journal
        self.events = events or Events()
        self.clock = clock
        self.halt = threading.Event()  # Ctrl-C: start nothing new anywhere
        self.failed = threading.Event()  # a step failed in the running phase
        self.lock = threading.Lock()
        self.runner = StepRunner(pool, clock=clock, halt=self.halt)
        self.done_before: frozenset[str] = frozenset(journal.completed) if journal else frozenset()
        self.results: dict[str, StepResult] = {}
        self.running = 0
        self.max_running = 0  # the most steps that ran at once; the tests check limits with it

    def must_halt(self, phase: PhasePlan) -> bool:
        if self.halt.is_set():
            return True
        return self.failed.is_set() and not phase.strategy.finish_batch

    def settle(self, step: Step, result: StepResult, *, journal: bool = True) -> None:
        with self.lock:
            self.results[step.id] = result
        log.debug(
            "%s: %s in %.2fs%s", step.id, result.status.value, result.duration,
            f": {result.message} (exit {result.exit_status}) {result.stderr_tail}" if result.message else "",
            extra={"host": step.host},
        )
        if journal and self.journal is not None and result.status is not StepStatus.NOT_REACHED:
            self.journal.record_step(step.id, result.phase, result.host, result.status.value, result.duration)
        self.events.step_finished(step, result)

    def run(self, plan: Plan) -> Report:
        if any(isinstance(s, DescribedStep) for s in plan.steps):
            raise TypeError("a plan read back from JSON describes steps; it cannot be executed")
        if self.journal is not None and self.journal.workflow != plan.workflow:
            raise ValueError(f"journal of '{self.journal.workflow}' cannot record a '{plan.workflow}' plan")
        # An executor may run several plans (one per upgrade hop); each run starts clean.
        self.halt.clear()
        self.failed.clear()
        self.results = {}
        self.done_before = frozenset(self.journal.completed) if self.journal else frozenset()
        started = self.clock()
        self.events.plan_started(plan)
        interrupted = False
        try:
            for phase in plan.phases:
                if self.failed.is_set():
                    break
                if phase.is_noop:
                    self.events.phase_skipped(phase)
                    continue
                self.events.phase_started(phase)
                for lanes in phase.strategy.batches(phase.lanes):
                    if self.failed.is_set():
                        break
                    batch = _Batch(self, phase, lanes)
                    try:
                        batch.start()
                        batch.wait()
                    except KeyboardInterrupt:
                        interrupted = True
                        self.halt.set()
                        self._drain(batch)
                        raise
                self.events.phase_finished(phase)
        except KeyboardInterrupt:
            interrupted = True
            self.halt.set()
        report = self._report(plan, started, interrupted)
        self.events.plan_finished(report)
        if interrupted:
            raise Interrupted(self._interrupted_message(report), report)
        if report.failed:
            raise ExecutionFailed(self._failure_message(report), report)
        return report

    def _drain(self, batch: _Batch) -> None:
        """Let the steps already running end so their outcome is journaled; a second Ctrl-C stops
        waiting (those steps are then reported not reached and rerun on resume)."""
        try:
            batch.wait()
        except KeyboardInterrupt:
            pass

    def _report(self, plan: Plan, started: float, interrupted: bool) -> Report:
        with self.lock:
            results = [self.results.get(s.id) or not_reached(s) for s in plan.steps]
        failed = any(r.status is StepStatus.FAILED for r in results)
        outcome = "interrupted" if interrupted else ("failed" if failed else "succeeded")
        report = Report(plan.workflow, outcome=outcome, results=results, duration=self.clock() - started)
        if self.journal is not None:
            report.run_id = self.journal.run_id
            report.run_dir = str(self.journal.run_dir)
            if self.journal.log_path.exists():
                report.log_path = str(self.journal.log_path)
            self.journal.finish(outcome)
            report.save(self.journal.report_path)
        return report

    @staticmethod
    def _failure_message(report: Report) -> str:
        first = report.failed[0]
        more = len(report.failed) - 1
        also = f" (and {more} more failed step{'s' if more != 1 else ''})" if more else ""
        untouched = report.untouched_hosts()
        never = f"; never touched: {', '.join(untouched)}" if untouched else ""
        return f"[{first.host}] {first.title}: {first.message}{also}{never}"

    @staticmethod
    def _interrupted_message(report: Report) -> str:
        done = sum(1 for r in report.results if r.status in (StepStatus.DONE, StepStatus.UNCHANGED))
        left = sum(1 for r in report.results if r.status is StepStatus.NOT_REACHED)
        resume = f"; continue with --resume (run {report.run_id})" if report.run_id else ""
        return f"interrupted after {done} step{'s' if done != 1 else ''}, {left} not started{resume}"
