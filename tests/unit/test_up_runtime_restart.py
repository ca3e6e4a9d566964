"""`up` never restarts the container runtime of nodes in a running cluster all at once: a changed
containerd configuration rolls, control planes one at a time and workers in batches of the upgrade
policy's maxUnavailable, each node drained, restarted, gated on Ready, uncordoned. A node not yet in
the cluster is still configured at once, before kubeadm."""

from __future__ import annotations

import dataclasses

from kubeforge.facts.types import Applied
from kubeforge.model import UpgradePolicy
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.plan.up import UpContext, plan_up
from kubeforge.render.host_prep import CONTAINERD_PATH
from tests.unit.test_up_planner import CNI, cluster, converged_ctx, fresh_facts, phase, resolved  # noqa: F401


def with_old_runtime_config(ctx: UpContext, names) -> UpContext:
    """The hosts' records name another containerd config than the one rendered now."""
    facts = dict(ctx.facts)
    for n in names:
        rec = dict(facts[n].applied.record)
        rec["files"] = {**rec["files"], CONTAINERD_PATH: "0" * 64}
        facts[n] = dataclasses.replace(facts[n], applied=Applied(record=rec))
    return dataclasses.replace(ctx, facts=facts)


def test_a_runtime_change_on_joined_nodes_rolls_drained_and_gated_never_in_parallel(cluster, resolved):
    nodes = [h.name for h in cluster.nodes]
    plan = plan_up(with_old_runtime_config(converged_ctx(cluster, resolved[1]), nodes))
    install = phase(plan, "InstallPackages")
    assert not any("containerd" in s.title for s in install.steps)
    cps = phase(plan, "RestartControlPlaneRuntimes")
    assert cps.strategy.kind == "serial" and [lane.host for lane in cps.lanes] == ["cp-1", "cp-2"]
    assert cps.strategy.batches(["cp-1", "cp-2"]) == [["cp-1"], ["cp-2"]] and not cps.strategy.finish_batch
    workers = phase(plan, "RestartWorkerRuntimes")
    assert workers.strategy.kind == "batched" and workers.strategy.batch_size(2) == 1  # maxUnavailable 1
    for p in (cps, workers):
        for lane in p.lanes:
            kinds = [(type(s).__name__, s.title.split(" ")[0]) for s in lane.steps]
            assert kinds == [("RunStep", "Drain"), ("PutFileStep", "Write"), ("RunStep", "Restart"),
                             ("GateStep", "Wait"), ("RunStep", "Uncordon")], kinds
            put = next(s for s in lane.steps if isinstance(s, PutFileStep))
            assert put.file.path == CONTAINERD_PATH and put.host == lane.host
            gate = next(s for s in lane.steps if isinstance(s, GateStep))
            assert lane.host in gate.title and "Ready" in gate.title


def test_worker_runtime_batches_follow_max_unavailable(cluster, resolved):
    c = dataclasses.replace(cluster, upgrade=dataclasses.replace(UpgradePolicy(), max_unavailable="100%"))
    ctx = dataclasses.replace(converged_ctx(cluster, resolved[1]), cluster=c)
    plan = plan_up(with_old_runtime_config(ctx, ["worker-1", "worker-2"]))
    workers = phase(plan, "RestartWorkerRuntimes")
    assert workers.strategy.batches([lane.host for lane in workers.lanes]) == [["worker-1", "worker-2"]]
    assert phase(plan, "RestartControlPlaneRuntimes").is_noop


def test_a_node_not_yet_joined_gets_its_runtime_started_at_once_before_kubeadm(cluster, resolved):
    ctx = converged_ctx(cluster, resolved[1])
    facts = {**ctx.facts, "worker-2": fresh_facts("worker-2")}
    state = dataclasses.replace(ctx.state, nodes={n: s for n, s in ctx.state.nodes.items() if n != "worker-2"})
    plan = plan_up(dataclasses.replace(ctx, facts=facts, state=state))
    install = [s for s in phase(plan, "InstallPackages").steps if s.host == "worker-2"]
    assert any(isinstance(s, RunStep) and s.title == "Start containerd with its configuration" for s in install)
    assert phase(plan, "RestartWorkerRuntimes").is_noop and phase(plan, "RestartControlPlaneRuntimes").is_noop


def test_a_converged_cluster_plans_no_runtime_restart(cluster, resolved):
    plan = plan_up(converged_ctx(cluster, resolved[1]))
    assert phase(plan, "RestartControlPlaneRuntimes").is_noop and phase(plan, "RestartWorkerRuntimes").is_noop


def with_runtime_config_edited_on_host(ctx: UpContext, name: str, edited: bool = True) -> UpContext:
    """The record names the rendered containerd config; the facts read the host's copy (another one)."""
    f = ctx.facts[name]
    rendered = ctx.file(ctx.cluster.host(name), CONTAINERD_PATH)
    on_host = {CONTAINERD_PATH: "e" * 64 if edited else rendered.sha256}
    return dataclasses.replace(ctx, facts={**ctx.facts, name: dataclasses.replace(
        f, applied=dataclasses.replace(f.applied, on_host=on_host))})


def test_a_runtime_config_edited_on_a_joined_node_is_written_back_and_containerd_restarted_drained(cluster, resolved):
    ctx = with_runtime_config_edited_on_host(converged_ctx(cluster, resolved[1]), "worker-1")
    plan = plan_up(ctx)
    workers = phase(plan, "RestartWorkerRuntimes")
    assert [lane.host for lane in workers.lanes] == ["worker-1"]
    steps = workers.lanes[0].steps
    assert [s.title.split(" ")[0] for s in steps] == ["Drain", "Write", "Restart", "Wait", "Uncordon"]
    assert next(s for s in steps if isinstance(s, PutFileStep)).file.path == CONTAINERD_PATH
    # the content put back is the one containerd last started on, by the stamp: a restart must still
    # follow, as containerd runs what the other party wrote and restarted it on
    restart = next(s for s in steps if s.title.startswith("Restart"))
    assert "ActiveEnterTimestamp" in restart.unless.script and "stat -c %Y" in restart.unless.script
    assert phase(plan, "RestartControlPlaneRuntimes").is_noop
    assert "worker-1 after its runtime restart" in phase(plan, "WaitNodesReady").reason


def test_a_runtime_config_as_rendered_on_the_host_plans_nothing(cluster, resolved):
    plan = plan_up(with_runtime_config_edited_on_host(converged_ctx(cluster, resolved[1]), "worker-1", edited=False))
    assert phase(plan, "RestartWorkerRuntimes").is_noop


def test_up_notes_a_not_ready_node_with_its_reason_and_an_edited_runtime_config(cluster, resolved):
    from kubeforge.workflows.up import state_notes

    ctx = with_runtime_config_edited_on_host(converged_ctx(cluster, resolved[1]), "worker-1")
    why = 'failed to create pod sandbox: the kubelet\'s cgroup driver "systemd" is not the container runtime\'s "cgroupfs"'
    nodes = {**ctx.state.nodes, "worker-1": dataclasses.replace(ctx.state.nodes["worker-1"], ready=False, why=why)}
    ctx = dataclasses.replace(ctx, state=dataclasses.replace(ctx.state, nodes=nodes))
    assert state_notes(ctx) == [
        f"[worker-1] node NotReady: {why}",
        f"[worker-1] {CONTAINERD_PATH} was changed on the host since kubeforge wrote it: `up` writes it back and "
        "restarts containerd",
    ]
    assert state_notes(converged_ctx(cluster, resolved[1])) == []
