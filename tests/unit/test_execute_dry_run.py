"""Dry-run walks the very Plan the executor runs and changes nothing: it has no transport at all."""

from __future__ import annotations

import hashlib
import inspect
import io
from pathlib import Path

from test_execute_support import pool_for

from kubeforge.execute import DryRunExecutor, Executor, StepStatus
from kubeforge.model import RenderedFile, Secret
from kubeforge.plan import GateStep, HostLane, LocalStep, PhasePlan, Plan, PutFileStep, RunStep, batched, serial
from kubeforge.transport.base import Command
from kubeforge.ui.progress import PlainProgress


def tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", p.stat().st_mode)
        for p in sorted(root.rglob("*"))
    }


def mutating_plan(tmp_path: Path, calls: list) -> Plan:
    hosts = tmp_path / "hosts"
    lanes = []
    for h in ("worker-1", "worker-2"):
        lanes.append(
            HostLane(
                h,
                (
                    PutFileStep(h, RenderedFile("/etc/kubeforge/join.yaml", b"kind: JoinConfiguration\n", mode=0o600, secret=True)),
                    RunStep(h, Command(script=f"rm -rf {hosts}/{h}/etc/existing; touch {hosts}/{h}/joined", env={"TOKEN": Secret("tok-123456789")}), "Join"),
                    GateStep(h, Command(argv=["test", "-e", f"{hosts}/{h}/joined"]), "Wait for Ready", what=f"node {h} Ready", timeout_s=5, interval_s=0.05),
                ),
            )
        )
    record = LocalStep("Record the join", fn=lambda: calls.append("local"), key="record")
    return Plan(
        "up",
        (
            PhasePlan("JoinWorkers", "Join workers", batched(1), tuple(lanes)),
            PhasePlan("WriteState", "Write state", serial(), (HostLane("local", (record,)),)),
        ),
    )


def test_dry_run_changes_nothing_that_the_real_run_would_change(tmp_path):
    for h in ("worker-1", "worker-2"):
        (tmp_path / "hosts" / h / "etc" / "existing").mkdir(parents=True)
    calls: list = []
    plan = mutating_plan(tmp_path, calls)
    before = tree(tmp_path)

    out = io.StringIO()
    report = DryRunExecutor(events=PlainProgress(out)).run(plan)
    assert tree(tmp_path) == before
    assert calls == []
    assert report.outcome == "dry-run"
    assert [r.status for r in report.results] == [StepStatus.PLANNED] * 7
    text = out.getvalue()
    assert "Dry run of up: 7 steps" in text
    assert "[worker-2] would run: Join: TOKEN=*** rm -rf" in text
    assert "tok-123456789" not in text

    Executor(pool_for(tmp_path, ["worker-1", "worker-2"])).run(plan)
    assert tree(tmp_path) != before  # the same plan, run for real, does change the hosts
    assert calls == ["local"]


def test_the_dry_run_executor_is_never_handed_a_transport():
    params = inspect.signature(DryRunExecutor.__init__).parameters
    assert set(params) == {"self", "events", "done_before"}


def test_dry_run_of_a_resumed_run_shows_steps_done_earlier(tmp_path):
    plan = mutating_plan(tmp_path, [])
    first = plan.steps[0].id
    report = DryRunExecutor(done_before=frozenset({first})).run(plan)
    assert report.results[0].status is StepStatus.EARLIER
    assert report.results[1].status is StepStatus.PLANNED


def test_a_dry_run_report_counts_what_would_run_per_host(tmp_path):
    report = DryRunExecutor().run(mutating_plan(tmp_path, []))
    lines = report.render_text().splitlines()
    assert lines[0] == "up: dry-run"
    assert lines[1].split() == ["host", "would", "run", "done", "earlier"]
    assert lines[2].split() == ["worker-1", "3", "0"]
    assert lines[4].split() == ["local", "1", "0"]
