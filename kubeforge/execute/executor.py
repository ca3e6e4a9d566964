"""The executor: runs a Plan's phases in order over Transports, host lanes per the phase strategy.

Each host's steps run in order on a worker thread; a batch's hosts run at once up to the
strategy's limit. On a failure nothing new starts (``finish_batch`` phases first let the hosts of
the current batch finish), later phases are not reached, and ``ExecutionFailed`` carries a report
in which every planned step appears once. A stop request (kubeforge.execute.stop: a signal, or
Ctrl-C as KeyboardInterrupt when no handler is installed) starts nothing new either; steps already
running end, or are stopped on their hosts, the journal keeps how each ended, and ``Interrupted``
carries the report. Steps the journal of a resumed run has as done are skipped, never repeated.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable

from kubeforge.errors import ExecutionFailed, Interrupted
from kubeforge.execute.events import Events
from kubeforge.execute.journal import Journal
from kubeforge.execute.report import Report, StepResult, StepStatus
from kubeforge.execute.step_runner import Pool, StepRunner
from kubeforge.execute.stop import Stop
from kubeforge.plan.phase import HostLane, PhasePlan, Plan
from kubeforge.plan.steps import DescribedStep, Step, done_earlier
from kubeforge.transport.cancel import stop_on

# Every step goes to the run's log file at debug level; the console hears about it through Events.
log = logging.getLogger("kubeforge.execute")

# How often the main thread wakes while waiting for workers, so a stop request is seen promptly.
_POLL_S = 0.05


def not_reached(step: Step, status: StepStatus = StepStatus.NOT_REACHED) -> StepResult:
    return StepResult(step.id, getattr(step, "phase", ""), step.host, step.title, status)


class _Batch:
    """One batch of host lanes running on worker threads; the main thread only waits."""

    def __init__(self, executor: Executor, phase: PhasePlan, lanes: list[HostLane]) -> None:
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
            # Commands of this thread's steps are stopped on their hosts when the run must stop now.
            with stop_on(self.ex.stop.kill):
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
            if done_earlier(step, ex.done_before):
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
            if result.status in (StepStatus.INTERRUPTED, StepStatus.NOT_REACHED):  # stopped by a stop request
                return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait(self) -> None:
        """Until every worker is done. Ctrl-C arriving as KeyboardInterrupt (no handler installed)
        becomes a stop request like any signal, and the wait goes on: the workers end soon."""
        while True:
            try:
                while not self.finished.wait(_POLL_S):
                    pass
                return
            except KeyboardInterrupt:
                self.ex.stop.request(signal.SIGINT)


class Executor:
    """Runs a Plan for real. ``pool.get(host)`` gives the Transport of a host."""

    def __init__(
        self,
        pool: Pool,
        *,
        journal: Journal | None = None,
        events: Events | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop: Stop | None = None,
    ) -> None:
        self.pool = pool
        self.journal = journal
        self.events = events or Events()
        self.clock = clock
        self.stop = stop or Stop()  # the engine's, which its signal handlers set
        self.failed = threading.Event()  # a step failed in the running phase
        self.lock = threading.Lock()
        self.runner = StepRunner(pool, clock=clock, halt=self.stop.halt)
        self.done_before: frozenset[str] = frozenset(journal.completed) if journal else frozenset()
        self.results: dict[str, StepResult] = {}
        self.running = 0
        self.max_running = 0  # the most steps that ran at once; the tests check limits with it

    def must_halt(self, phase: PhasePlan) -> bool:
        if self.stop.requested:
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
        # An executor may run several plans (one per upgrade hop); each starts clean, but a stop
        # request stays: once asked to stop, nothing more starts.
        self.failed.clear()
        self.results = {}
        self.done_before = frozenset(self.journal.completed) if self.journal else frozenset()
        started = self.clock()
        self.events.plan_started(plan)
        try:
            for phase in plan.phases:
                if self.failed.is_set() or self.stop.requested:
                    break
                if phase.is_noop:
                    self.events.phase_skipped(phase)
                    continue
                self.events.phase_started(phase)
                for lanes in phase.strategy.batches(phase.lanes):
                    if self.failed.is_set() or self.stop.requested:
                        break
                    batch = _Batch(self, phase, lanes)
                    batch.start()
                    batch.wait()
                self.events.phase_finished(phase)
        except KeyboardInterrupt:  # between batches, with no handler installed: no worker runs
            self.stop.request(signal.SIGINT)
        report = self._report(plan, started)
        self.events.plan_finished(report)
        if report.outcome == "interrupted":
            raise Interrupted(self._interrupted_message(report), report)
        if report.failed:
            raise ExecutionFailed(self._failure_message(report), report)
        return report

    def _report(self, plan: Plan, started: float) -> Report:
        with self.lock:
            results = [self.results.get(s.id) or not_reached(s) for s in plan.steps]
        failed = any(r.status is StepStatus.FAILED for r in results)
        # A stop request that came after the last step ended changed nothing: that run succeeded.
        unfinished = any(r.status in (StepStatus.NOT_REACHED, StepStatus.INTERRUPTED) for r in results)
        interrupted = self.stop.requested and unfinished
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

    def _interrupted_message(self, report: Report) -> str:
        resume = f"; continue with --resume (run {report.run_id})" if report.run_id else ""
        return f"{self.stop.reason()}: {report.summary()}{resume}"
