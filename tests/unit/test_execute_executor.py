"""The executor over real LocalTransports: order per strategy, failure semantics, the report."""

from __future__ import annotations

import pytest
from test_execute_support import intervals, max_overlap, one_phase_plan, pool_for, timed_step

from kubeforge.errors import ExecutionFailed
from kubeforge.execute import Executor, Recorder, StepStatus
from kubeforge.model import RenderedFile, Secret
from kubeforge.plan import (
    GateStep,
    GetFileStep,
    HostLane,
    LocalStep,
    PhasePlan,
    Plan,
    PutFileStep,
    RunStep,
    batched,
    parallel,
    serial,
)
from kubeforge.transport.base import Command

HOSTS = [f"worker-{i}" for i in range(1, 9)]


def test_serial_runs_hosts_one_after_another_in_plan_order(tmp_path):
    log = tmp_path / "log"
    hosts = HOSTS[:3]
    plan = one_phase_plan(serial(), {h: [timed_step(h, log, seconds=0.05)] for h in hosts})
    Executor(pool_for(tmp_path, hosts)).run(plan)
    spans = intervals(log)
    assert [h for h, _, _ in spans] == hosts
    assert max_overlap(spans) == 1


def test_parallel_never_exceeds_its_limit(tmp_path):
    log = tmp_path / "log"
    plan = one_phase_plan(parallel(3), {h: [timed_step(h, log, seconds=0.25)] for h in HOSTS})
    ex = Executor(pool_for(tmp_path, HOSTS))
    ex.run(plan)
    spans = intervals(log)
    assert len(spans) == 8
    assert max_overlap(spans) == 3
    assert ex.max_running == 3


def test_batched_25_percent_of_8_runs_2_at_a_time_batch_after_batch(tmp_path):
    log = tmp_path / "log"
    plan = one_phase_plan(batched("25%"), {h: [timed_step(h, log, seconds=0.15)] for h in HOSTS})
    Executor(pool_for(tmp_path, HOSTS)).run(plan)
    spans = {h: (s, e) for h, s, e in intervals(log)}
    assert max_overlap(list(intervals(log))) == 2
    for i in range(0, 6, 2):
        batch_end = max(spans[h][1] for h in HOSTS[i : i + 2])
        next_start = min(spans[h][0] for h in HOSTS[i + 2 : i + 4])
        assert batch_end <= next_start, f"batch {i // 2 + 2} started before batch {i // 2 + 1} ended"


def test_serial_phase_stops_at_the_first_failure_and_reports_who_was_not_reached(tmp_path):
    log = tmp_path / "log"
    hosts = ["cp-1", "cp-2", "cp-3"]
    lanes = {
        "cp-1": [timed_step("cp-1", log, seconds=0)],
        "cp-2": [timed_step("cp-2", log, seconds=0, fail=True, title="Join control plane"), RunStep("cp-2", Command(argv=["true"]), "After")],
        "cp-3": [timed_step("cp-3", log, seconds=0)],
    }
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, hosts)).run(one_phase_plan(serial(), lanes))
    report = info.value.report
    by = {(r.host, r.title): r for r in report.results}
    assert by[("cp-1", "Work")].status is StepStatus.DONE
    failed = by[("cp-2", "Join control plane")]
    assert failed.status is StepStatus.FAILED and failed.exit_status == 3
    assert "disk on fire" in failed.stderr_tail
    assert by[("cp-2", "After")].status is StepStatus.NOT_REACHED
    assert by[("cp-3", "Work")].status is StepStatus.NOT_REACHED
    assert report.untouched_hosts() == ["cp-3"]
    assert "[cp-2] Join control plane" in str(info.value) and "never touched: cp-3" in str(info.value)
    assert [h for h, _, _ in intervals(log)] == ["cp-1", "cp-2"]


def test_parallel_phase_starts_nothing_new_after_a_failure(tmp_path):
    log = tmp_path / "log"
    hosts = ["etcd-1", "etcd-2"]
    lanes = {
        "etcd-1": [timed_step("etcd-1", log, seconds=0, fail=True)],
        "etcd-2": [timed_step("etcd-2", log, seconds=0.4), RunStep("etcd-2", Command(script=f"echo second >> {log}"), "Second")],
    }
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, hosts)).run(one_phase_plan(parallel(), lanes))
    statuses = {(r.host, r.title): r.status for r in info.value.report.results}
    assert statuses[("etcd-2", "Work")] is StepStatus.DONE  # it was already running: it ends
    assert statuses[("etcd-2", "Second")] is StepStatus.NOT_REACHED
    assert "second" not in log.read_text()


def test_a_failing_worker_batch_finishes_then_later_batches_are_never_touched(tmp_path):
    log = tmp_path / "log"
    hosts = HOSTS[:6]
    lanes = {h: [timed_step(h, log, seconds=0.05, fail=(h == "worker-3")), RunStep(h, Command(argv=["true"]), "Uncordon")] for h in hosts}
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, hosts)).run(one_phase_plan(batched(2), lanes))
    report = info.value.report
    counts = report.counts()
    assert counts["worker-1"]["done"] == 2 and counts["worker-2"]["done"] == 2
    assert counts["worker-3"]["failed"] == 1 and counts["worker-3"]["not reached"] == 1
    assert counts["worker-4"]["done"] == 2  # same batch as the failure: it finished
    assert report.untouched_hosts() == ["worker-5", "worker-6"]
    assert "never touched: worker-5, worker-6" in report.render_text()


def test_a_failed_phase_leaves_later_phases_not_reached(tmp_path):
    marker = tmp_path / "later"
    first = PhasePlan("Fail", "Fail", serial(), (HostLane("h", (RunStep("h", Command(argv=["false"]), "Break"),)),))
    later = PhasePlan("Later", "Later", serial(), (HostLane("h", (RunStep("h", Command(argv=["touch", str(marker)]), "Touch"),)),))
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, ["h"])).run(Plan("t", (first, later)))
    assert [r.status for r in info.value.report.results] == [StepStatus.FAILED, StepStatus.NOT_REACHED]
    assert not marker.exists()


def test_put_file_is_unchanged_when_the_host_already_has_it(tmp_path):
    pool = pool_for(tmp_path, ["cp-1"])
    f = RenderedFile("/etc/kubeforge/kubeadm.yaml", b"kind: InitConfiguration\n", mode=0o640)
    plan = one_phase_plan(serial(), {"cp-1": [PutFileStep("cp-1", f)]})
    first = Executor(pool).run(plan)
    second = Executor(pool).run(plan)
    assert first.results[0].status is StepStatus.DONE
    assert second.results[0].status is StepStatus.UNCHANGED
    written = tmp_path / "hosts" / "cp-1" / "etc/kubeforge/kubeadm.yaml"
    assert written.read_bytes() == f.content and written.stat().st_mode & 0o777 == 0o640


def test_a_guard_that_succeeds_makes_the_step_unchanged_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    step = RunStep("h", Command(argv=["touch", str(marker)]), "Enable swapoff", unless=Command(argv=["true"]))
    report = Executor(pool_for(tmp_path, ["h"])).run(one_phase_plan(serial(), {"h": [step]}))
    assert report.results[0].status is StepStatus.UNCHANGED
    assert not marker.exists()


def test_a_gate_waits_until_its_probe_succeeds(tmp_path):
    ready = tmp_path / "ready"
    lanes = {
        "cp-1": [
            RunStep("cp-1", Command(script=f"(sleep 0.3; touch {ready}) >/dev/null 2>&1 &"), "Restart kubelet"),
            GateStep("cp-1", Command(argv=["test", "-e", str(ready)]), "Wait for Ready", what="node cp-1 Ready", timeout_s=10, interval_s=0.05),
        ]
    }
    report = Executor(pool_for(tmp_path, ["cp-1"])).run(one_phase_plan(serial(), lanes))
    assert [r.status for r in report.results] == [StepStatus.DONE, StepStatus.DONE]
    assert report.results[1].duration >= 0.2


def test_a_gate_that_times_out_says_what_it_waited_for(tmp_path):
    gate = GateStep("cp-1", Command(script="echo 'node not ready' >&2; exit 1"), "Wait for Ready", what="node cp-1 Ready", timeout_s=0.3, interval_s=0.05)
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, ["cp-1"])).run(one_phase_plan(serial(), {"cp-1": [gate]}))
    result = info.value.report.results[0]
    assert result.message == "timed out after 0.3s waiting for node cp-1 Ready"
    assert "node not ready" in result.stderr_tail


def test_local_steps_run_on_this_machine_and_may_report_unchanged(tmp_path):
    calls = []
    steps = [
        LocalStep("Write admin.conf", fn=lambda: calls.append("write"), key="admin"),
        LocalStep("Record state", fn=lambda: False, key="record"),
    ]
    report = Executor({}).run(one_phase_plan(serial(), {"local": steps}))
    assert calls == ["write"]
    assert [r.status for r in report.results] == [StepStatus.DONE, StepStatus.UNCHANGED]


def test_a_failed_step_report_masks_secrets(tmp_path):
    token = "s3cr3t-token-value-42"
    step = RunStep("h", Command(script='echo "bad token $TOKEN" >&2; exit 1', env={"TOKEN": Secret(token)}), "Join")
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, ["h"])).run(one_phase_plan(serial(), {"h": [step]}))
    text = info.value.report.render_text()
    assert "bad token ***" in text
    assert token not in text and token not in str(info.value.report.to_dict())


def test_events_follow_the_plan(tmp_path):
    rec = Recorder()
    skip = PhasePlan("Noop", "Noop", serial(), (), "converged")
    work = PhasePlan("Work", "Work", serial(), (HostLane("h", (RunStep("h", Command(argv=["true"]), "T"),)),))
    Executor(pool_for(tmp_path, ["h"]), events=rec).run(Plan("t", (skip, work)))
    kinds = [e[0] for e in rec.events]
    assert kinds == ["plan", "skip", "phase", "start", "end", "finish"]
    assert rec.events[-1] == ("finish", "succeeded")


def test_a_gate_whose_probe_hangs_keeps_polling_until_the_deadline(tmp_path):
    gate = GateStep("cp-1", Command(argv=["sleep", "5"], timeout=0.2), "Wait for API", what="the API server on cp-1", timeout_s=0.5, interval_s=0.05)
    with pytest.raises(ExecutionFailed) as info:
        Executor(pool_for(tmp_path, ["cp-1"])).run(one_phase_plan(serial(), {"cp-1": [gate]}))
    result = info.value.report.results[0]
    assert result.message == "timed out after 0.5s waiting for the API server on cp-1"
    assert "timed out after 0.2s" in result.stderr_tail


def test_get_file_fetches_to_the_operators_machine(tmp_path):
    remote = tmp_path / "hosts" / "cp-1" / "etc/kubernetes/admin.conf"
    remote.parent.mkdir(parents=True)
    remote.write_text("apiVersion: v1\nkind: Config\n")
    local = tmp_path / "state" / "admin.conf"
    local.parent.mkdir()
    step = GetFileStep("cp-1", "/etc/kubernetes/admin.conf", str(local), sudo=False)
    report = Executor(pool_for(tmp_path, ["cp-1"])).run(one_phase_plan(serial(), {"cp-1": [step]}))
    assert report.results[0].status is StepStatus.DONE
    assert local.read_text() == "apiVersion: v1\nkind: Config\n"
