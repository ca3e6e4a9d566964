"""UpgradeWorkers: workers in batches of the policy's max unavailable (a count or a share of all
workers), so never more than that many are cordoned at once. Each: kubeadm, drain, `kubeadm
upgrade node`, kubelet + kubectl, restart, Ready, uncordon. A drain a PodDisruptionBudget blocks
past the timeout stops that worker (uncordoned again unless leaveCordonedOnFailure); the rest of
the batch finishes, then the run stops and reports who failed and who was never touched."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import batched
from kubeforge.plan.upgrade.commands import kubeadm_upgrade_node
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.plan.upgrade.node_steps import (
    back_in_service,
    drain_step,
    kubeadm_first,
    kubelet_and_back,
)


class UpgradeWorkers:
    name = "UpgradeWorkers"
    title = "Upgrade workers"
    strategy = batched(1)

    def title_for(self, ctx: UpgradeContext) -> str:
        return ctx.title(self.title)

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        workers = ctx.cluster.workers
        # The batch is sized on every worker, not on those left: a resumed run keeps the same limit.
        size = ctx.cluster.upgrade.batch_size(len(workers))
        lanes = []
        for host in workers:
            if ctx.converged(host):
                back = back_in_service(ctx, host)
                if back:
                    lanes.append((host.name, back))
                continue
            steps: list = kubeadm_first(ctx, host)
            steps.append(drain_step(ctx, host))
            steps.append(kubeadm_upgrade_node(ctx.cluster, host.name, ctx.target, control_plane=False,
                                              key=ctx.key("kubeadm-upgrade-node")))
            steps += kubelet_and_back(ctx, host)
            lanes.append((host.name, steps))
        reason = f"every worker already runs {ctx.target}" if workers else "no workers"
        return PhasePlan.of(self, lanes, title=self.title_for(ctx),
                            strategy=batched(max(1, size)), reason_if_empty=reason)
