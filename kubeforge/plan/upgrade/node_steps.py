"""The steps one node goes through, shared by the control-plane and worker phases: drain, the new
minor's runtime configuration (containerd restarted on it), kubelet and kubectl, restart, readiness
gate, uncordon. kubectl runs on the first control plane (it holds admin.conf); the package, runtime
and kubelet steps run on the node itself.

Whatever the new minor changes on a node (containerd's config with the minor's pause image, the
kubeadm configs kubeforge keeps) is written here, inside the node's own drain window, so the next
`up` at the new version has nothing left to change or restart."""

from __future__ import annotations

from dataclasses import replace

from kubeforge.model import Host
from kubeforge.plan.steps import PutFileStep, slug
from kubeforge.plan.up.scripts import restart_when_changed
from kubeforge.plan.upgrade.commands import (
    drain,
    install_held,
    node_ready_at,
    restart_kubelet,
    uncordon,
)
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.render.host_prep import CONTAINERD_PATH, CRICTL_PATH
from kubeforge.render.kubeadm import INIT_PATH, JOIN_PATH, UPGRADE_PATH

# Files of a node that depend on the Kubernetes minor, as `up` renders them; the runtime's are
# read by containerd only when it starts.
RUNTIME_FILES = (CONTAINERD_PATH, CRICTL_PATH)
KUBEADM_FILES = (INIT_PATH, JOIN_PATH)


def kubeadm_first(ctx: UpgradeContext, host: Host) -> list:
    """The kubeadm configuration for the hop (v1beta4) and kubeadm itself at the target."""
    steps: list = [PutFileStep(host.name, f, key=ctx.key("put-kubeadm-upgrade")) for f in ctx.files_of(host, (UPGRADE_PATH,))]
    steps.append(install_held(host.name, ("kubeadm",), ctx.target, key=ctx.key("kubeadm"), offline=ctx.offline))
    return steps


def stacked_etcd_gate(ctx: UpgradeContext, host: Host) -> list:
    """After `kubeadm upgrade apply|node` on a stacked control plane (kubeadm restarted its etcd member
    on the etcd its minor pins): every member healthy with one leader before the next control plane's
    member restarts, so members move one at a time and quorum holds through a mixed-version window."""
    from kubeforge.model import EtcdTopology
    from kubeforge.plan.etcd.install import health_gate

    if ctx.cluster.etcd.topology is not EtcdTopology.STACKED:
        return []
    members = ctx.cluster.etcd_members
    return [health_gate(ctx.cluster, host, members, key=ctx.key("etcd-healthy", host.name),
                        title=f"Wait for etcd healthy on {len(members)} members after {host.name}'s member moved")]


def behind_balancers_apiserver(ctx: UpgradeContext, host: Host, upgrade: list) -> list:
    """``kubeadm upgrade apply|node`` on a control plane restarts its API server: behind kubeforge's
    haproxy balancers the node is drained there first and re-enabled once its API answers
    (kubeforge.plan.endpoint.drain); the steps are unchanged otherwise."""
    from kubeforge.plan.certs.renew import api_ready, api_url
    from kubeforge.plan.endpoint.drain import balancers, behind_balancers
    from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
    from kubeforge.plan.steps import GateStep

    if not balancers(ctx.cluster):
        return upgrade
    gate = GateStep(host.name, api_ready(host), "Wait for the API ready",
                    what=f"the API server of {host.name} ready at {api_url(host)} after its upgrade",
                    timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=ctx.key("api-ready", host.name))
    return behind_balancers(ctx.cluster, host, [*upgrade, gate], GATE_TIMEOUT_S, key=f"-v{ctx.target}")


def drain_step(ctx: UpgradeContext, host: Host):
    return drain(ctx.first.name, host.name, ctx.cluster.upgrade, key=ctx.key("drain", host.name))


def runtime_for_minor(ctx: UpgradeContext, host: Host) -> list:
    """The runtime and kubeadm files `up` renders at the target, and containerd restarted when its
    configuration changed (the stamp `up` checks, so `up` does not restart it again)."""
    files = ctx.up_files_of(host, RUNTIME_FILES + KUBEADM_FILES)
    steps: list = [PutFileStep(host.name, f, key=ctx.key("put", slug(f.path))) for f in files]
    if any(f.path in RUNTIME_FILES for f in files):
        restart = restart_when_changed(host, "containerd", [CONTAINERD_PATH],
                                       f"Restart containerd with the {ctx.target.minor_str} configuration")
        steps.append(replace(restart, key=ctx.key("restart-containerd")))
    return steps


def back_in_service(ctx: UpgradeContext, host: Host) -> list:
    """For a node already at the version: nothing, unless the resumed run drained it and stopped
    before its uncordon (ctx.left_cordoned) -- then its readiness gate and uncordon, under the ids
    kubelet_and_back gives them, so the journal skips the gate when it had passed."""
    if not ctx.left_cordoned(host):
        return []
    return kubelet_and_back(ctx, host)[-2:]


def kubelet_and_back(ctx: UpgradeContext, host: Host) -> list:
    """Inside the drain window: the minor's runtime configuration, kubelet + kubectl at the target,
    the kubelet restarted, Ready on the new version, uncordoned."""
    via = ctx.first.name
    return [
        *runtime_for_minor(ctx, host),
        install_held(host.name, ("kubelet", "kubectl"), ctx.target, key=ctx.key("kubelet-kubectl"),
                     offline=ctx.offline),
        restart_kubelet(host.name, ctx.target, key=ctx.key("restart-kubelet")),
        node_ready_at(via, host.name, ctx.target, ctx.cluster.upgrade.node_ready_timeout_s, key=ctx.key("ready", host.name)),
        uncordon(via, host.name, key=ctx.key("uncordon", host.name)),
    ]
