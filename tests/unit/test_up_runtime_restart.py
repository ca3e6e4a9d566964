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
