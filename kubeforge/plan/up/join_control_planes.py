"""JoinControlPlanes: the other control planes, one at a time, each gated on its node being
registered in the API before the next starts (the API and etcd never see two control-plane joins at
once). Ready comes later, once the CNI runs (WaitNodesReady).

A control plane whose earlier join stopped half-way (UpContext.half_joined) is taken back first, in
its own lane: with stacked etcd the member its join added is removed by the first control plane (found
by peer URL: one added but never started has no name; refused before anything changes when etcd could
not commit that removal or would be left below quorum), then `kubeadm reset` (keeping the PKI
kubeforge placed), then its Node object is deleted (reset leaves it, and kubeadm refuses to join a
name whose Node is Ready), and it joins again."""

from __future__ import annotations

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcdctl import client_url, peer_url
from kubeforge.model import EtcdTopology, Host
from kubeforge.model.kubeadm_paths import ADMIN_CONF, KUBELET_CONF
from kubeforge.plan.etcd.membership import ListedMember, quorum, remove_by_peer_url
from kubeforge.plan.kubectl import delete_node
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import rolling
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.init_first_control_plane import kubeforge_files, quiet, reset_keeping_pki
from kubeforge.plan.up.scripts import node_registered_gate, puts
from kubeforge.render.kubeadm import JOIN_PATH
from kubeforge.transport.base import Command


def half_added_member(ctx: UpContext, host: Host) -> ListedMember | None:
    """The etcd member a half-joined stacked control plane's join added, if etcd lists one. Removing it
    goes through raft: refused (SafetyRefusal) when etcd has no quorum now — the member added counts as
    a voter from the moment it is listed, started or not — or when fewer healthy voters than a quorum
    would stay. A learner never votes: removing it is always safe."""
    c = ctx.cluster
    if c.etcd.topology is not EtcdTopology.STACKED:
        return None
    if ctx.etcd_members is None:
        raise SafetyRefusal(f"{host.name}: its earlier join stopped half-way and etcd's member list was not read; "
                            "its etcd member cannot be removed blind; nothing was changed")
    url = peer_url(c, host)
    mine = next((m for m in ctx.etcd_members if m.peer_url == url), None)
    if mine is None or mine.learner:
        return mine
    voters = [m for m in ctx.etcd_members if not m.learner]
    healthy = sum(1 for m in voters if m.healthy)
    what = f"the etcd member {host.name}'s stopped join added ({mine.name or 'never started'}, {url})"
    if healthy < quorum(len(voters)):
        raise SafetyRefusal(
            f"etcd has no quorum now ({healthy} of {len(voters)} voting members healthy, counting {what}): "
            "removing it cannot commit; nothing was changed",
            hint=f"let {host.name}'s kubelet run its etcd static pod so the member starts, then run again "
                 "(or restore etcd from a backup: kubeforge etcd restore)")
    staying_healthy = healthy - (1 if mine.healthy else 0)
    if staying_healthy < quorum(len(voters) - 1):
        raise SafetyRefusal(
            f"removing {what} would leave {staying_healthy} healthy of {len(voters) - 1} voting members, below "
            f"quorum ({quorum(len(voters) - 1)}); nothing was changed",
            hint="bring the other control planes' etcd back first (kubeforge etcd status), then run again")
    return mine


def take_back_steps(ctx: UpContext, host: Host) -> list:
    """Undo a stopped control-plane join so kubeadm's preflight lets it join again."""
    c, first = ctx.cluster, ctx.first
    steps: list = []
    member = half_added_member(ctx, host)
    if member is not None:
        endpoints = [client_url(c, h) for h in c.etcd_members if h.name != host.name]
        steps.append(RunStep(first.name, Command(script=remove_by_peer_url(c, endpoints, member.peer_url), sudo=True,
                                                 timeout=180, description=f"member remove {host.name}"),
                             f"Remove the etcd member {host.name}'s stopped join added", key=f"etcd-member-{host.name}",
                             repeat_on_resume=True))
    steps.append(RunStep(host.name, Command(script=reset_keeping_pki(), sudo=True, timeout=300),
                         "kubeadm reset: an earlier kubeadm join stopped before this control plane was marked",
                         key="kubeadm-reset-incomplete-join", repeat_on_resume=True))
    steps.append(RunStep(first.name, delete_node(host.name, timeout=60),
                         f"Delete node {host.name} (its join starts over)", key=f"delete-{host.name}",
                         repeat_on_resume=True))
    return steps


def join_steps(ctx: UpContext, host: Host, kubeconfig: str) -> list:
    steps: list = puts(host, kubeforge_files(ctx, host))
    if not ctx.needs_join(host):
        # A member only gets its refreshed config files (a new token); a rolling phase still ends
        # every lane on a gate, here a read-only one that passes at once.
        return [*steps, node_registered_gate(host, host.name, kubeconfig, ctx.gate_timeout_s)] if steps else []
    if ctx.half_joined(host):
        steps += take_back_steps(ctx, host)
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
