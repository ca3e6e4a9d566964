"""UpgradeControlPlanes: the other control planes, one at a time, each gated on Ready before the
next starts: kubeadm, `kubeadm upgrade node`, drain, kubelet + kubectl, restart, Ready, uncordon."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import serial
from kubeforge.plan.upgrade.commands import kubeadm_upgrade_node
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.plan.upgrade.node_steps import (
    back_in_service,
    behind_balancers_apiserver,
    drain_step,
    kubeadm_first,
    kubelet_and_back,
    stacked_etcd_gate,
)


class UpgradeControlPlanes:
    name = "UpgradeControlPlanes"
    title = "Upgrade the other control planes"
    strategy = serial()

    def title_for(self, ctx: UpgradeContext) -> str:
        return ctx.title(self.title)

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        lanes = []
        for host in ctx.other_control_planes:
            steps: list = []
            if not ctx.control_plane_done(host):
                steps += kubeadm_first(ctx, host)
                steps += behind_balancers_apiserver(ctx, host, [
                    kubeadm_upgrade_node(ctx.cluster, host.name, ctx.target, control_plane=True,
                                         key=ctx.key("kubeadm-upgrade-node")),
                    *stacked_etcd_gate(ctx, host)])
            if not ctx.kubelet_done(host):
                steps.append(drain_step(ctx, host))
                steps += kubelet_and_back(ctx, host)
            else:
                steps += back_in_service(ctx, host)
            lanes.append((host.name, steps))
        reason = f"every other control plane already runs {ctx.target}" if ctx.other_control_planes else "only one control plane"
        return PhasePlan.of(self, lanes, title=self.title_for(ctx),
                            reason_if_empty=reason)
