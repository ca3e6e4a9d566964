"""JoinControlPlanes: the other control planes, one at a time, each gated on its node being
registered in the API before the next starts (the API and etcd never see two control-plane joins at
once). Ready comes later, once the CNI runs (WaitNodesReady)."""

from __future__ import annotations

from kubeforge.model import Host
from kubeforge.model.kubeadm_paths import ADMIN_CONF, KUBELET_CONF
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import rolling
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.init_first_control_plane import kubeforge_files, quiet
from kubeforge.plan.up.scripts import node_registered_gate, puts
from kubeforge.render.kubeadm import JOIN_PATH
from kubeforge.transport.base import Command


def join_steps(ctx: UpContext, host: Host, kubeconfig: str) -> list:
    steps: list = puts(host, kubeforge_files(ctx, host))
    if ctx.joined(host):
        # A member only gets its refreshed config files (a new token); a rolling phase still ends
        # every lane on a gate, here a read-only one that passes at once.
        return [*steps, node_registered_gate(host, host.name, kubeconfig, ctx.gate_timeout_s)] if steps else []
    steps.append(
        RunStep(host.name, Command(script=quiet(f"kubeadm join --config {JOIN_PATH}", "kubeadm-join"), sudo=True, timeout=600),
                "kubeadm join" + (" as a control plane" if host.is_control_plane else ""),
                unless=Command(argv=["test", "-f", KUBELET_CONF], sudo=True), key="kubeadm-join")
    )
    steps.append(node_registered_gate(host, host.name, kubeconfig, ctx.gate_timeout_s))
    return steps


class JoinControlPlanes:
    name = "JoinControlPlanes"
    title = "Join the other control planes"
    strategy = rolling()

    def plan(self, ctx: UpContext) -> PhasePlan:
        others = ctx.cluster.control_planes[1:]
        if not others:
            return PhasePlan.noop(self, "one control plane")
        lanes = [(h.name, join_steps(ctx, h, ADMIN_CONF)) for h in others]
        return PhasePlan.of(self, lanes, reason_if_empty="every control plane is a node of the cluster")
