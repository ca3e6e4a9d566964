"""`up --resume` puts back into service a node the interrupted run drained for its runtime restart
and never uncordoned (the same gap the fault matrix found in `upgrade --resume`: stopped between the
containerd restart and the uncordon, the node has nothing left to change, so nothing was planned for
it and it stayed cordoned for good)."""

from __future__ import annotations

import dataclasses

from kubeforge.plan.up import plan_up
from tests.unit.test_up_planner import CNI, cluster, converged_ctx, phase, resolved  # noqa: F401

DRAINED = "RestartWorkerRuntimes/cp-1/runtime-drain-worker-1"
RESTARTED = "RestartWorkerRuntimes/worker-1/restart-containerd"
UNCORDONED = "RestartWorkerRuntimes/cp-1/runtime-uncordon-worker-1"


def cordoned(ctx, name):
    nodes = dict(ctx.state.nodes)
    nodes[name] = dataclasses.replace(nodes[name], unschedulable=True)
    return dataclasses.replace(ctx, state=dataclasses.replace(ctx.state, nodes=nodes))


def test_a_node_the_resumed_up_drained_and_left_cordoned_gets_its_ready_gate_and_uncordon(cluster, resolved):
    ctx = dataclasses.replace(cordoned(converged_ctx(cluster, resolved[1]), "worker-1"), journaled=frozenset({DRAINED, RESTARTED}))
    workers = phase(plan_up(ctx), "RestartWorkerRuntimes")
    assert [lane.host for lane in workers.lanes] == ["worker-1"]
    assert [s.id for s in workers.lanes[0].steps] == ["RestartWorkerRuntimes/cp-1/runtime-ready-worker-1", UNCORDONED]
    assert phase(plan_up(ctx), "RestartControlPlaneRuntimes").is_noop


def test_a_cordon_no_resumed_run_left_is_the_operator_s_and_stays(cluster, resolved):
    ctx = cordoned(converged_ctx(cluster, resolved[1]), "worker-1")
    assert phase(plan_up(ctx), "RestartWorkerRuntimes").is_noop  # a plain run
    done = dataclasses.replace(ctx, journaled=frozenset({DRAINED, RESTARTED, UNCORDONED}))
    assert phase(plan_up(done), "RestartWorkerRuntimes").is_noop  # uncordoned then, cordoned since by hand
    ready = dataclasses.replace(converged_ctx(cluster, resolved[1]), journaled=frozenset({DRAINED}))
    assert phase(plan_up(ready), "RestartWorkerRuntimes").is_noop  # no longer cordoned
