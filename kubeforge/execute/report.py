"""What a run did: per step and per host done / unchanged / failed / not reached.

Built by the executor from the very Plan it ran, so every planned step appears exactly once: a step
that never started is "not reached", never silently absent. Saved as ``report.json`` in the run
directory; ``render_text()`` is the plain table the CLI prints on failure.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeforge.model.secret import redact


class StepStatus(str, enum.Enum):
    DONE = "done"
    UNCHANGED = "unchanged"  # already as wanted (file sha256 matched, guard said converged)
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # running when the run was interrupted; stopped (rerun on --resume)
    NOT_REACHED = "not reached"
    EARLIER = "done earlier"  # recorded done in the journal of the run being resumed
    PLANNED = "would run"  # dry run

    def __str__(self) -> str:
        return self.value


COUNTED = (StepStatus.DONE, StepStatus.UNCHANGED, StepStatus.FAILED, StepStatus.INTERRUPTED, StepStatus.NOT_REACHED,
           StepStatus.EARLIER)
# Columns shown only when some step has that status.
OPTIONAL = (StepStatus.INTERRUPTED, StepStatus.EARLIER)


@dataclass(frozen=True)
class StepResult:
    step_id: str
    phase: str
    host: str
    title: str
    status: StepStatus
    duration: float = 0.0
    command: str = ""  # masked display form
    exit_status: int | None = None
    stderr_tail: str = ""
    message: str = ""  # why it failed, in one line

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "phase": self.phase,
            "host": self.host,
            "title": self.title,
            "status": self.status.value,
            "duration": round(self.duration, 3),
            "command": redact(self.command),
            "exit_status": self.exit_status,
            "stderr_tail": redact(self.stderr_tail),
            "message": redact(self.message),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepResult:
        return cls(
            step_id=d["step"],
            phase=d["phase"],
            host=d["host"],
            title=d["title"],
            status=StepStatus(d["status"]),
            duration=d.get("duration", 0.0),
            command=d.get("command", ""),
            exit_status=d.get("exit_status"),
            stderr_tail=d.get("stderr_tail", ""),
            message=d.get("message", ""),
        )


@dataclass
class Report:
    workflow: str
    run_id: str = ""
    outcome: str = "succeeded"  # succeeded | failed | interrupted | dry-run
    results: list[StepResult] = field(default_factory=list)
    duration: float = 0.0
    run_dir: str = ""
    log_path: str = ""
    # What went wrong around the run rather than in a step (a cluster lock that could not be
    # released): shown beside the outcome, never instead of it.
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[StepResult]:
        return [r for r in self.results if r.status is StepStatus.FAILED]

    @property
    def hosts(self) -> list[str]:
        out: list[str] = []
        for r in self.results:
            if r.host not in out:
                out.append(r.host)
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Per host, how many steps ended in each status."""
        table: dict[str, dict[str, int]] = {h: {s.value: 0 for s in COUNTED} for h in self.hosts}
        for r in self.results:
            row = table[r.host]
            row[r.status.value] = row.get(r.status.value, 0) + 1
        return table

    def with_status(self, *statuses: StepStatus) -> list[StepResult]:
        return [r for r in self.results if r.status in statuses]

    def hosts_with(self, status: StepStatus) -> list[str]:
        return [h for h in self.hosts if any(r.host == h and r.status is status for r in self.results)]

    def untouched_hosts(self) -> list[str]:
        """Hosts on which no step ran at all in this run."""
        return [
            h
            for h in self.hosts
            if all(r.status is StepStatus.NOT_REACHED for r in self.results if r.host == h)
        ]

    def changed(self) -> int:
        return sum(1 for r in self.results if r.status is StepStatus.DONE)

    def render_text(self) -> str:
        counts = self.counts()
        cols = [s.value for s in COUNTED if s not in OPTIONAL or self.hosts_with(s)]
        if self.outcome == "dry-run":
            cols = [StepStatus.PLANNED.value, StepStatus.EARLIER.value]
        width = max([4] + [len(h) for h in counts])
        lines = [f"{self.workflow}: {self.outcome}" + (f" (run {self.run_id})" if self.run_id else "")]
        lines.append(f"{'host':<{width}}  " + "  ".join(f"{c:>12}" for c in cols))
        for host, row in counts.items():
            lines.append(f"{host:<{width}}  " + "  ".join(f"{row[c]:>12}" for c in cols))
        for r in self.failed:
            lines.append(f"failed [{r.host}] {r.title}: {r.message}")
            if r.command:
                lines.append(f"  command: {r.command}")
            if r.exit_status is not None:
                lines.append(f"  exit status: {r.exit_status}")
            for tail in r.stderr_tail.strip().splitlines()[-5:]:
                lines.append(f"  | {tail}")
        for r in self.with_status(StepStatus.INTERRUPTED):
            lines.append(f"interrupted [{r.host}] {r.title}: {r.message}")
        if self.outcome == "interrupted":
            lines.append(self.summary())
        untouched = self.untouched_hosts()
        if untouched and self.outcome != "succeeded":
            lines.append("never touched: " + ", ".join(untouched))
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.run_dir:
            lines.append(f"run: {self.run_dir}")
        return redact("\n".join(lines))

    def summary(self) -> str:
        """``12 done, 3 unchanged, 1 failed, 1 interrupted, 20 never reached``: every step counted once."""
        n = {s: len(self.with_status(s)) for s in StepStatus}
        parts = [f"{n[StepStatus.DONE]} done", f"{n[StepStatus.UNCHANGED]} unchanged"]
        if n[StepStatus.EARLIER]:
            parts.append(f"{n[StepStatus.EARLIER]} done earlier")
        parts += [f"{n[StepStatus.FAILED]} failed", f"{n[StepStatus.INTERRUPTED]} interrupted",
                  f"{n[StepStatus.NOT_REACHED]} never reached"]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "run_id": self.run_id,
            "outcome": self.outcome,
            "duration": round(self.duration, 3),
            "run_dir": self.run_dir,
            "log_path": self.log_path,
            "hosts": self.counts(),
            "steps": [r.to_dict() for r in self.results],
            "notes": [redact(n) for n in self.notes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls(
            workflow=d["workflow"],
            run_id=d.get("run_id", ""),
            outcome=d.get("outcome", ""),
            results=[StepResult.from_dict(s) for s in d.get("steps", [])],
            duration=d.get("duration", 0.0),
            run_dir=d.get("run_dir", ""),
            log_path=d.get("log_path", ""),
            notes=list(d.get("notes", [])),
        )

    def save(self, path: Path) -> Path:
        from kubeforge.execute.durable import replace_file

        replace_file(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        return path
