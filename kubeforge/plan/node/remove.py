"""The `node remove` planner: hosts that are still in the inventory leave the cluster as if they
were gone from it, newest layer first, with the cluster whole at every step.

Phases, in order:
  DrainNodes          (serial)    kubectl drain on the first control plane, PodDisruptionBudgets
                                  respected, with the upgrade policy's timeout; skipped for a node
                                  the API no longer lists (a resumed run)
  UpdateEndpoint      (parallel)  haproxy (and keepalived) on the balancers that stay, rendered from
                                  the cluster without the removed hosts, reloaded: no new request
                                  reaches a control plane that is about to go
  RemoveEtcdMember-*  (serial)    the etcd member of a leaving etcd host or stacked control plane,
                                  removed by a member that stays, leadership moved away first, a
                                  health gate after (the `etcd members` phase)
  then `reset`'s phases for the hosts: kubeadm reset, the Node object deleted, etcd stopped and its
  data moved aside, balancers stopped, kubeforge's files removed.

Refused before anything is touched (SafetyRefusal, exit 7): the first control plane (kubeadm init
ran there, the cluster lock and kubectl live there), fewer etcd members left than a quorum of
today's (unless the operator allows it: two to one), no etcd member or no balancer left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from shlex import quote as q

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcdctl import peer_url
from kubeforge.model import Cluster, EndpointMode, EtcdTopology, Host, UpgradePolicy
from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.etcd.membership import ListedMember, RemoveEtcdMember, quorum
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.reset import ResetContext, plan_reset
from kubeforge.plan.strategy import parallel, serial
from kubeforge.plan.up.scripts import puts, restart_when_changed
from kubeforge.plan.upgrade.commands import drain
from kubeforge.render.context import cluster_context
from kubeforge.render.endpoint import CHECK_SCRIPT_PATH, HAPROXY_PATH, KEEPALIVED_PATH, render_endpoint
from kubeforge.transport.base import Command

WORKFLOW = "node remove"


@dataclass(frozen=True)
class RemovalInput:
    cluster: Cluster  # the inventory, the leaving hosts still in it
    hosts: tuple[Host, ...]  # leaving, inventory order
    stamp: str  # UTC time for the moved-aside etcd data dir: 20261122T081500Z
    api_reachable: bool  # the first control plane's API answered
    members: tuple[ListedMember, ...] = ()  # etcd's own member list now (read when an etcd member leaves)
    drain_timeout_s: int | None = None  # None: the inventory's upgrade.drainTimeout
    registered: frozenset[str] = frozenset()  # the Node objects the API lists now

    @property
    def names(self) -> frozenset[str]:
        return frozenset(h.name for h in self.hosts)

    @property
    def after(self) -> Cluster:
        return without(self.cluster, self.names)


def without(cluster: Cluster, names: frozenset[str]) -> Cluster:
    """The cluster as it is meant to be once ``names`` have left: what the balancers are rendered from."""
    return replace(cluster, hosts=tuple(h for h in cluster.hosts if h.name not in names))


def next_step(cluster: Cluster, names: Sequence[str], inventory: str) -> str:
    """What the operator does once the hosts have left: the inventory still lists them."""
    them = "them" if len(names) > 1 else "it"
    note = (f"{', '.join(names)} left the cluster; delete {them} from {inventory} now "
            f"(a later `kubeforge up` would join {them} again)")
    after = without(cluster, frozenset(names))
    if after.etcd.topology is EtcdTopology.STACKED and len(after.control_planes) == 2:
        # kubeforge refuses to load such an inventory (either failure loses etcd quorum)
        note += ("; 2 control planes with stacked etcd tolerate no failure and kubeforge will not load that "
                 "inventory: add a third control plane in the same edit, then run `kubeforge up`")
    return note


def check_removal(cluster: Cluster, hosts: Sequence[Host], *, allow_below_quorum: bool = False) -> None:
    """Refuse a removal that would leave the cluster short of what it needs; one message each."""
    names = {h.name for h in hosts}
    first = cluster.first_control_plane
    if first.name in names:
        raise SafetyRefusal(
            f"{first.name} is the first control plane (kubeadm init ran there; kubeforge's lock and kubectl live "
            "there): it cannot be removed while the cluster stays; nothing was changed",
            hint="remove the other hosts; to retire the whole cluster use `kubeforge reset`",
        )
    members = cluster.etcd_members
    leaving = [m.name for m in members if m.name in names]
    if leaving:
        staying = len(members) - len(leaving)
        if staying == 0:
            raise SafetyRefusal(f"removing {', '.join(leaving)} leaves no etcd member; nothing was changed",
                                hint="to retire the whole cluster use `kubeforge reset`")
        if staying < quorum(len(members)) and not allow_below_quorum:
            raise SafetyRefusal(
                f"removing {', '.join(leaving)} leaves {staying} of {len(members)} etcd members, fewer than "
                f"today's quorum ({quorum(len(members))}): while it runs every member must stay up, and the "
                "cluster that is left tolerates no failure; nothing was changed",
                hint="add a member first (then remove), or pass --allow-below-quorum to shrink anyway",
            )
    if cluster.endpoint.mode is EndpointMode.HAPROXY:
        lbs = [h.name for h in cluster.load_balancers]
        if lbs and set(lbs) <= names:
            raise SafetyRefusal(f"removing {', '.join(lbs)} leaves no load balancer for the API endpoint; "
                                "nothing was changed", hint="keep one balancer, or add one first")


class DrainNodes:
    name = "DrainNodes"
    title = "Drain the nodes (PodDisruptionBudgets respected)"
    strategy = serial()

    def plan(self, inp: RemovalInput) -> PhasePlan:
        c = inp.cluster
        policy: UpgradePolicy = c.upgrade
        if inp.drain_timeout_s is not None:
            policy = replace(policy, drain_timeout_s=inp.drain_timeout_s)
        via = c.first_control_plane.name
        nodes = [h for h in inp.hosts if h.is_control_plane or h.is_worker]
        if nodes and not inp.api_reachable:
            return PhasePlan.noop(self, "the API server did not answer: nothing can be drained")
        steps = []
        for h in nodes:
            if h.name not in inp.registered:
                continue
            step = drain(via, h.name, policy, key=f"drain-{h.name}")
            # gone already (a resumed run after the Node was deleted): nothing to drain
            steps.append(replace(step, unless=Command(script=f"! {KUBECTL} get node {q(h.name)} >/dev/null 2>&1",
                                                      sudo=True, timeout=60)))
        return PhasePlan.of(self, [(via, steps)], reason_if_empty="no node of the selection is registered in the cluster")


class UpdateEndpoint:
    name = "UpdateEndpoint"
    title = "Update the load balancers' backends"
    strategy = parallel()

    def plan(self, inp: RemovalInput) -> PhasePlan:
        c = inp.cluster
        if c.endpoint.mode is not EndpointMode.HAPROXY:
            return PhasePlan.noop(self, f"endpoint mode {c.endpoint.mode}: no balancer of kubeforge's lists backends")
        after = inp.after
        ctx = cluster_context(after)
        lanes = []
        for lb in after.load_balancers:
            files = [f for f in render_endpoint(ctx, lb) if f.path in (HAPROXY_PATH, KEEPALIVED_PATH, CHECK_SCRIPT_PATH)]
            steps: list = puts(lb, files)
            # reload, as `up` does: balancers keep their connections, the VIP stays where it is
            steps.append(restart_when_changed(lb, "haproxy", [HAPROXY_PATH], "Reload haproxy without the removed backends",
                                              reload=True))
            steps.append(restart_when_changed(lb, "keepalived", [KEEPALIVED_PATH, CHECK_SCRIPT_PATH],
                                              "Reload keepalived without the removed peers", reload=True))
            lanes.append((lb.name, steps))
        return PhasePlan.of(self, lanes, strategy=parallel(c.parallelism), reason_if_empty="no load balancer stays")


class RemoveEtcdMembers:
    """Shown when etcd no longer lists any leaving member (a resumed run): each one it lists is a
    RemoveEtcdMember phase of its own."""

    name = "RemoveEtcdMembers"
    title = "Remove the etcd members"
    strategy = serial()

    def plan(self, inp: RemovalInput) -> PhasePlan:
        leaving = [h.name for h in inp.cluster.etcd_members if h.name in inp.names]
        return PhasePlan.noop(self, f"etcd no longer lists {', '.join(leaving)}")


def remove_members(inp: RemovalInput) -> list[PhasePlan]:
    """One phase per leaving member the cluster still lists, each by a healthy member that stays."""
    c = inp.cluster
    leaving = [h for h in c.etcd_members if h.name in inp.names]
    if not leaving:
        return []
    staying = tuple(h for h in c.etcd_members if h.name not in inp.names)
    by_url = {m.peer_url: m for m in inp.members}
    healthy = {m.name for m in inp.members if m.healthy}
    via = next((h for h in staying if h.name in healthy), staying[0])
    phases = []
    for h in leaving:
        m = by_url.get(peer_url(c, h))
        if m is not None:
            # retire=None: reset's StopEtcd (external) or kubeadm reset (stacked) stops it afterwards
            phases.append(RemoveEtcdMember(m, via, staying, None).plan(c))
    return phases or [RemoveEtcdMembers().plan(inp)]


# In order, then `reset`'s phases (kubeforge.plan.reset.PHASES) for the leaving hosts. Note: with
# stacked etcd, reset's RemoveEtcdMembers (the reset control planes' members) follows these.
PHASES = (DrainNodes(), UpdateEndpoint(), RemoveEtcdMembers(), RemoveEtcdMember)


def plan_node_remove(inp: RemovalInput, registered: frozenset[str]) -> Plan:
    """``registered``: the Node objects the API lists now."""
    inp = replace(inp, registered=registered)
    reset = plan_reset(ResetContext(inp.cluster, inp.hosts, False, inp.stamp, inp.api_reachable))
    phases = (DrainNodes().plan(inp), UpdateEndpoint().plan(inp), *remove_members(inp), *reset.phases)
    return Plan(WORKFLOW, phases)
