"""UpgradeFirstControlPlane: kubeadm to the target, `kubeadm upgrade plan`, `kubeadm upgrade apply`
(the one command that moves the cluster's version), then this node's kubelet behind a drain."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import serial
from kubeforge.plan.upgrade.commands import kubeadm_upgrade_apply, kubeadm_upgrade_plan
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.plan.upgrade.node_steps import (
    back_in_service,
    behind_balancers_apiserver,
    drain_step,
    kubeadm_first,
    kubelet_and_back,
    stacked_etcd_gate,
)


class UpgradeFirstControlPlane:
    name = "UpgradeFirstControlPlane"
    title = "Upgrade the first control plane"
    strategy = serial()

    def title_for(self, ctx: UpgradeContext) -> str:
        return ctx.title(f"{self.title} ({ctx.first.name})")

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        host = ctx.first
        steps: list = []
        if not ctx.control_plane_done(host):
            steps += kubeadm_first(ctx, host)
            steps.append(kubeadm_upgrade_plan(ctx.cluster, host.name, ctx.target, key=ctx.key("kubeadm-upgrade-plan")))
            steps += behind_balancers_apiserver(ctx, host, [
                kubeadm_upgrade_apply(ctx.cluster, host.name, ctx.target, key=ctx.key("kubeadm-upgrade-apply")),
                *stacked_etcd_gate(ctx, host)])
        if not ctx.kubelet_done(host):
            steps.append(drain_step(ctx, host))
            steps += kubelet_and_back(ctx, host)
        else:
            steps += back_in_service(ctx, host)
        return PhasePlan.of(self, [(host.name, steps)], title=self.title_for(ctx),
                            reason_if_empty=f"{host.name} already runs {ctx.target}")
