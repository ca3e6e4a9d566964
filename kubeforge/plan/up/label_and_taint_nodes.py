"""LabelAndTaintNodes: the inventory's labels and taints that the API does not show yet, applied
with kubectl from the first control plane (labels outside the kubelet's own prefixes can only be set
this way; taints of nodes that joined before the inventory named them, too)."""

from __future__ import annotations

from kubeforge.facts.cluster import Node
from kubeforge.model import Host
from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import q
from kubeforge.render.kubeadm import node_view
from kubeforge.transport.base import Command


def missing(ctx: UpContext, host: Host) -> tuple[list[str], list[str]]:
    """(label specs, taint specs) the node lacks; everything when the node is not known yet, or is a
    half-joined control plane's (JoinControlPlanes deletes that Node and the join registers it anew)."""
    known = None if ctx.half_joined(host) else ctx.state.nodes.get(host.name)
    node = known or Node(host.name, False)
    labels = [f"{k}={v}" for k, v in sorted(host.labels.items()) if node.labels.get(k) != v]
    taints = [str(t) for t in node_view(ctx.cluster, host).taints if str(t) not in node.taints]
    return labels, taints


class LabelAndTaintNodes:
    name = "LabelAndTaintNodes"
    title = "Label and taint nodes"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        lines = []
        for host in ctx.cluster.nodes:
            labels, taints = missing(ctx, host)
            if labels:
                lines.append(f"{KUBECTL} label node {q(host.name)} {' '.join(q(x) for x in labels)} --overwrite")
            if taints:
                lines.append(f"{KUBECTL} taint node {q(host.name)} {' '.join(q(x) for x in taints)} --overwrite")
        if not lines:
            return PhasePlan.noop(self, "every node has the inventory's labels and taints")
        step = RunStep(ctx.first.name, Command(script="\n".join(lines) + "\n", sudo=True), "Apply labels and taints", key="labels-taints")
        return PhasePlan.of(self, [(ctx.first.name, [step])])
