"""Progress while a plan runs: a live view on a TTY (phase, host, step, elapsed), plain lines
otherwise (``[cp-1] Upgrade kubelet … done 2.3s``), so logs and CI output stay readable."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kubeforge.execute.events import Events
from kubeforge.execute.report import StepStatus
from kubeforge.model.secret import redact
from kubeforge.ui.console import is_tty


def step_line(host: str, title: str, status: str, duration: float | None = None, *, message: str = "") -> str:
    took = f" {duration:.1f}s" if duration is not None and status != StepStatus.EARLIER.value else ""
    why = f": {message}" if message else ""
    return redact(f"[{host}] {title} … {status}{took}{why}")


class PlainProgress(Events):
    """One line per phase and per finished step; safe from many threads."""

    def __init__(self, out: TextIO | Console) -> None:
        self.out = out
        self._lock = threading.Lock()
        self.dry_run = False

    def _say(self, text: str) -> None:
        with self._lock:
            if isinstance(self.out, Console):
                self.out.print(text, markup=False, highlight=False)
            else:
                self.out.write(text + "\n")
                self.out.flush()

    def plan_started(self, plan, *, dry_run=False):
        self.dry_run = dry_run
        self._say(("Dry run of " if dry_run else "Running ") + plan.summary())

    def phase_started(self, phase):
        self._say(f"== {phase.title} ({phase.strategy.describe()})")

    def phase_skipped(self, phase):
        self._say(f"== {phase.title}: nothing to do: {phase.reason}")

    def step_finished(self, step, result):
        if self.dry_run:
            self._say(redact(f"[{step.host}] would {step.kind}: {step.describe()}"))
            return
        message = result.message if result.status is StepStatus.FAILED else ""
        self._say(step_line(step.host, step.title, result.status.value, result.duration, message=message))


class LiveProgress(PlainProgress):
    """Finished steps scroll above; below them a table of what runs now and for how long."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.console = console
        self.phase = ""
        self.running: dict[str, tuple[str, str, float]] = {}  # step id -> (host, title, started)
        self.live = Live(console=console, auto_refresh=True, refresh_per_second=4, transient=True,
                         get_renderable=self._render)

    def _render(self) -> Table:
        table = Table(show_header=True, header_style="bold", box=None)
        for col in ("phase", "host", "step", "elapsed"):
            table.add_column(col)
        now = time.monotonic()
        with self._lock:
            rows = list(self.running.values())
        for host, title, started in rows:
            table.add_row(self.phase, host, Text(redact(title)), f"{now - started:.1f}s")
        return table

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def plan_started(self, plan, *, dry_run=False):
        super().plan_started(plan, dry_run=dry_run)
        if not dry_run:
            self.live.start()

    def phase_started(self, phase):
        self.phase = phase.title
        super().phase_started(phase)

    def step_started(self, step):
        with self._lock:
            self.running[step.id] = (step.host, step.title, time.monotonic())

    def step_finished(self, step, result):
        with self._lock:
            self.running.pop(step.id, None)
        super().step_finished(step, result)

    def plan_finished(self, report):
        if self.live.is_started:
            self.live.stop()


def make_progress(console: Console) -> Events:
    """Live progress on a terminal, plain lines otherwise."""
    return LiveProgress(console) if is_tty(console) else PlainProgress(console)
