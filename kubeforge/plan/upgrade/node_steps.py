"""The steps one node goes through, shared by the control-plane and worker phases: drain, kubelet
and kubectl, restart, readiness gate, uncordon. kubectl runs on the first control plane (it holds
admin.conf); the package and kubelet steps run on the node itself."""

from __future__ import annotations

from kubeforge.model import Host
from kubeforge.plan.steps import PutFileStep
from kubeforge.plan.upgrade.commands import (
    drain,
    install_held,
    node_ready_at,
    restart_kubelet,
    uncordon,
)
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.render.kubeadm import UPGRADE_PATH


def kubeadm_first(ctx: UpgradeContext, host: Host) -> list:
    """The kubeadm configuration for the hop (v1beta4) and kubeadm itself at the target."""
    steps: list = [PutFileStep(host.name, f, key=ctx.key("put-kubeadm-upgrade")) for f in ctx.files_of(host, (UPGRADE_PATH,))]
    steps.append(install_held(host.name, ("kubeadm",), ctx.target, key=ctx.key("kubeadm"), offline=ctx.offline))
    return steps


def drain_step(ctx: UpgradeContext, host: Host):
    return drain(ctx.first.name, host.name, ctx.cluster.upgrade, key=ctx.key("drain", host.name))


def kubelet_and_back(ctx: UpgradeContext, host: Host) -> list:
    """kubelet + kubectl at the target, the kubelet restarted, Ready on the new version, uncordoned."""
    via = ctx.first.name
    return [
        install_held(host.name, ("kubelet", "kubectl"), ctx.target, key=ctx.key("kubelet-kubectl"),
                     offline=ctx.offline),
        restart_kubelet(host.name, ctx.target, key=ctx.key("restart-kubelet")),
        node_ready_at(via, host.name, ctx.target, ctx.cluster.upgrade.node_ready_timeout_s, key=ctx.key("ready", host.name)),
        uncordon(via, host.name, key=ctx.key("uncordon", host.name)),
    ]
