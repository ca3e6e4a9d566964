"""JoinWorkers: workers join in parallel batches (at most the cluster's parallelism at once); a
failing batch finishes, later batches are not started, and the report names who never joined."""

from __future__ import annotations

from kubeforge.model.kubeadm_paths import KUBELET_CONF
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import batched
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.join_control_planes import join_steps


class JoinWorkers:
    name = "JoinWorkers"
    title = "Join the workers"
    strategy = batched(30)

    def plan(self, ctx: UpContext) -> PhasePlan:
        workers = ctx.cluster.workers
        if not workers:
            return PhasePlan.noop(self, "no workers in the inventory")
        # A worker asks the API about itself with its own kubelet credentials (no admin.conf there).
        lanes = [(h.name, join_steps(ctx, h, KUBELET_CONF)) for h in workers]
        return PhasePlan.of(self, lanes, strategy=batched(max(1, ctx.cluster.parallelism)),
                            reason_if_empty="every worker is a node of the cluster")
