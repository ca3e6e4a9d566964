"""What the operator sees: the plan, progress lines, the report table, the confirmation prompt."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from test_execute_support import one_phase_plan, pool_for

from kubeforge.errors import ExecutionFailed, UsageError
from kubeforge.execute import Executor, run_confirmed
from kubeforge.model import Secret
from kubeforge.plan import PhasePlan, Plan, RunStep, serial
from kubeforge.transport.base import Command
from kubeforge.ui.confirm import Confirmer
from kubeforge.ui.output import emit, to_json
from kubeforge.ui.plan_view import print_plan
from kubeforge.ui.progress import LiveProgress, PlainProgress, make_progress
from kubeforge.ui.report_view import print_report

SECRET = "join-token-abcdef-1234567890"


def plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=200, highlight=False), buf


def plan_with_secret(marker) -> Plan:
    steps = {
        "cp-1": [RunStep("cp-1", Command(script=f"touch {marker}", env={"TOKEN": Secret(SECRET)}), "Upgrade kubelet")],
        "cp-2": [RunStep("cp-2", Command(argv=["true"]), "Upgrade kubelet")],
    }
    return one_phase_plan(serial(), steps, name="UpgradeControlPlanes")


def test_plain_progress_prints_one_line_per_finished_step(tmp_path):
    out = io.StringIO()
    Executor(pool_for(tmp_path, ["cp-1", "cp-2"]), events=PlainProgress(out)).run(plan_with_secret(tmp_path / "m"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Running test: 2 steps on 2 hosts in 1 of 1 phases"
    assert lines[1] == "== Do work (one host at a time)"
    assert re.fullmatch(r"\[cp-1\] Upgrade kubelet … done \d+\.\ds", lines[2])
    assert re.fullmatch(r"\[cp-2\] Upgrade kubelet … done \d+\.\ds", lines[3])


def test_plain_progress_says_why_a_step_failed(tmp_path):
    out = io.StringIO()
    plan = one_phase_plan(serial(), {"h": [RunStep("h", Command(script="echo nope >&2; exit 2"), "Drain node")]})
    with pytest.raises(ExecutionFailed):
        Executor(pool_for(tmp_path, ["h"]), events=PlainProgress(out)).run(plan)
    assert re.search(r"\[h\] Drain node … failed \d+\.\ds: .*exited 2: nope", out.getvalue())


def test_live_progress_runs_on_a_terminal_and_leaves_the_finished_lines(tmp_path):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    events = make_progress(console)
    assert isinstance(events, LiveProgress)
    Executor(pool_for(tmp_path, ["cp-1", "cp-2"]), events=events).run(plan_with_secret(tmp_path / "m"))
    assert not events.live.is_started
    assert "[cp-2] Upgrade kubelet … done" in buf.getvalue()
    assert SECRET not in buf.getvalue()


def test_progress_is_plain_lines_when_not_on_a_terminal():
    console, _ = plain_console()
    assert type(make_progress(console)) is PlainProgress


def test_the_printed_plan_is_derived_from_the_plan_and_masks_secrets(tmp_path):
    console, buf = plain_console()
    plan = plan_with_secret(tmp_path / "m")
    print_plan(console, plan)
    text = buf.getvalue()
    assert SECRET not in text
    for step in plan.steps:
        assert step.describe() in text
    assert "[cp-1]" in text and "Do work (one host at a time)" in text


def test_the_report_table_counts_per_host_and_shows_the_failure(tmp_path):
    plan = one_phase_plan(
        serial(),
        {
            "cp-1": [RunStep("cp-1", Command(argv=["true"]), "Ok")],
            "cp-2": [RunStep("cp-2", Command(script=f"echo 'bad {SECRET}' >&2; exit 4", env={"T": Secret(SECRET)}), "Break")],
            "cp-3": [RunStep("cp-3", Command(argv=["true"]), "Never")],
        },
    )
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, ["cp-1", "cp-2", "cp-3"])).run(plan)
    console, buf = plain_console()
    print_report(console, info.value.report)
    text = buf.getvalue()
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip().startswith("cp-")}
    assert rows["cp-1"] == ["1", "0", "0", "0"]
    assert rows["cp-2"] == ["0", "0", "1", "0"]
    assert rows["cp-3"] == ["0", "0", "0", "1"]
    assert "failed [cp-2] Break" in text and "exit status: 4" in text and "| bad ***" in text
    assert "never touched: cp-3" in text
    assert SECRET not in text


def test_json_output_is_one_document_without_secrets(tmp_path):
    buf = io.StringIO()
    emit(plan_with_secret(tmp_path / "m"), buf)
    data = json.loads(buf.getvalue())
    assert data["workflow"] == "test"
    assert SECRET not in buf.getvalue()
    assert to_json({"leak": SECRET}) == '{\n  "leak": "***"\n}'


def test_confirming_runs_exactly_the_plan_that_was_shown(tmp_path):
    marker = tmp_path / "m"
    plan = plan_with_secret(marker)
    console, buf = plain_console()
    asked = []
    confirm = Confirmer(console, ask=lambda q: asked.append(q) or "y", interactive=True)
    report = run_confirmed(plan, Executor(pool_for(tmp_path, ["cp-1", "cp-2"])), confirm)
    assert asked == ["Run these 2 steps? [y/N] "]
    assert [r.step_id for r in report.results] == [s.id for s in plan.steps]
    assert marker.exists()
    assert "Upgrade kubelet" in buf.getvalue()


def test_declining_runs_nothing(tmp_path):
    marker = tmp_path / "m"
    console, _ = plain_console()
    confirm = Confirmer(console, ask=lambda q: "n", interactive=True)
    assert run_confirmed(plan_with_secret(marker), Executor(pool_for(tmp_path, ["cp-1", "cp-2"])), confirm) is None
    assert not marker.exists()


def test_yes_skips_the_question_but_still_shows_the_plan(tmp_path):
    console, buf = plain_console()
    confirm = Confirmer(console, yes=True, ask=lambda q: pytest.fail("asked despite --yes"), interactive=False)
    report = run_confirmed(plan_with_secret(tmp_path / "m"), Executor(pool_for(tmp_path, ["cp-1", "cp-2"])), confirm)
    assert report.outcome == "succeeded"
    assert buf.getvalue().startswith("Plan test: 2 steps")


def test_without_a_terminal_and_without_yes_nothing_runs(tmp_path):
    console, _ = plain_console()
    confirm = Confirmer(console, interactive=False)
    with pytest.raises(UsageError, match="no terminal to confirm on") as info:
        run_confirmed(plan_with_secret(tmp_path / "m"), Executor(pool_for(tmp_path, ["cp-1", "cp-2"])), confirm)
    assert "--yes" in info.value.hint
    assert not (tmp_path / "m").exists()


def test_a_converged_plan_is_not_asked_about(tmp_path):
    console, _ = plain_console()
    plan = Plan("up", (PhasePlan("JoinWorkers", "Join workers", serial(), (), "every worker is already a node"),))
    confirm = Confirmer(console, ask=lambda q: pytest.fail("asked about a no-op"), interactive=True)
    report = run_confirmed(plan, Executor({}), confirm)
    assert report.outcome == "succeeded" and report.results == []


def test_a_dry_run_report_says_nothing_changed(tmp_path):
    from kubeforge.execute import DryRunExecutor

    console, buf = plain_console()
    print_report(console, DryRunExecutor().run(plan_with_secret(tmp_path / "m")))
    assert buf.getvalue().strip() == "dry run: 2 steps would run; nothing was changed"

