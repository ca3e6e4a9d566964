"""The `node replace` planner: a dead machine replaced by a blank one at the inventory's address.

What is decided here (pure; the workflow reads the live state and hands it in):
  - refusals before anything is touched (SafetyRefusal, exit 7): the first control plane (kubeadm
    init ran there, the cluster lock and kubectl live there); a host that is reachable and healthy
    (that is `node remove` + `up`), unless forced; an etcd member whose removal would leave fewer
    healthy voters than a quorum (another member down already);
  - the phases that take the old machine out of the cluster's books before the new one joins:
    etcd healthy without it (the gate before), its stacked etcd member removed (gate after), its
    Node object deleted. The join itself is `up`'s plan (new token, certificates uploaded with the
    cluster's certificate key), and an external etcd member's way back is `etcd members`' replace
    (removed, added as a learner, promoted once caught up, health gates) — composed by the workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcdctl import peer_url
from kubeforge.model import Cluster, EtcdTopology, Host
from kubeforge.plan.etcd.install import health_gate
from kubeforge.plan.etcd.membership import ListedMember, RemoveEtcdMember
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.reset import RemoveNodeObjects, ResetContext
from kubeforge.plan.strategy import serial

WORKFLOW = "node replace"


@dataclass(frozen=True)
class HostHealth:
    """What the named host looks like now. None: the question does not apply to its roles."""

    reachable: bool
    etcd_healthy: bool | None = None  # its etcd member answers healthy
    node_ready: bool | None = None  # the API lists its Node as Ready and the host has joined (kubelet.conf)

    @property
    def healthy(self) -> bool:
        answers = [a for a in (self.etcd_healthy, self.node_ready) if a is not None]
        return self.reachable and bool(answers) and all(answers)


def check_target(cluster: Cluster, host: Host) -> None:
    first = cluster.first_control_plane
    if host.name == first.name:
        raise SafetyRefusal(
            f"{host.name} is the first control plane (kubeadm init ran there; kubeforge's lock and kubectl live "
            "there): `node replace` does not rebuild it; nothing was changed",
            hint="restore it (kubeforge etcd restore for its data), or make another control plane the first in the "
                 "inventory once it is healthy and replace this one then",
        )


def refuse_if_healthy(host: Host, health: HostHealth, *, force: bool) -> None:
    if health.healthy and not force:
        what = " and ".join(w for w, a in (("its etcd member is healthy", health.etcd_healthy),
                                           ("its node is Ready", health.node_ready)) if a)
        raise SafetyRefusal(
            f"{host.name} ({host.address}) is reachable and {what}: it is not a dead machine; nothing was changed",
            hint=f"to rebuild a live host: `kubeforge node remove {host.name}`, then `kubeforge up`; "
                 "or pass --force to replace it anyway (its etcd data is moved aside, it joins again)",
        )


def target_member(cluster: Cluster, host: Host, listed: Sequence[ListedMember]) -> ListedMember | None:
    url = peer_url(cluster, host)
    return next((m for m in listed if m.peer_url == url or (m.name and m.name == host.name)), None)


def refuse_below_quorum(cluster: Cluster, host: Host, listed: Sequence[ListedMember]) -> None:
    """The dead member is one voter down already; removing it is safe only while every other voter
    is healthy (then the smaller cluster keeps its quorum, and a quorum of today's stays the whole
    time). With another member down, the cluster is at its last failure: refuse."""
    mine = target_member(cluster, host, listed)
    others = [m for m in listed if m is not mine and not m.learner]
    down = [m.name or m.peer_url for m in others if not m.healthy]
    voters = len(others) + (0 if mine is None or mine.learner else 1)
    if down:
        raise SafetyRefusal(
            f"etcd has {', '.join(down)} down besides {host.name} ({len(others) - len(down)} of {voters} voting members "
            "healthy): removing its member could lose quorum; nothing was changed",
            hint=f"bring {', '.join(down)} back first (kubeforge etcd status), then replace {host.name}",
        )
    if not others:
        raise SafetyRefusal(f"{host.name} is the only etcd member: there is nothing to re-add it to; nothing was changed",
                            hint="restore from a backup (kubeforge etcd restore)")


def stacked_member_phases(cluster: Cluster, host: Host, listed: Sequence[ListedMember]) -> list[PhasePlan]:
    """A control plane with stacked etcd: its dead member leaves the list (gated before and after)
    before kubeadm join --control-plane adds the new machine's member, which needs its peer URL free."""
    if cluster.etcd.topology is not EtcdTopology.STACKED or not host.is_control_plane:
        return []
    mine = target_member(cluster, host, listed)
    if mine is None:
        return [RemoveEtcdMember.gone(host.name).plan(cluster)]
    staying = tuple(h for h in cluster.etcd_members if h.name != host.name)
    healthy = {m.name for m in listed if m.healthy}
    via = next((h for h in staying if h.name in healthy), staying[0])
    return [quorum_gate(cluster, via, staying, host), RemoveEtcdMember(mine, via, staying, None).plan(cluster)]


class GateEtcdQuorum:
    """Before the dead member leaves: every member that stays healthy, so the removal keeps quorum."""

    name = "GateEtcdQuorum"
    title = "etcd healthy without the dead member"
    strategy = serial()

    def __init__(self, via: Host, staying: tuple[Host, ...], host: Host) -> None:
        self.via, self.staying, self.host = via, staying, host

    def plan(self, cluster: Cluster) -> PhasePlan:
        gate = health_gate(cluster, self.via, self.staying, key=f"gate-before-replace-{self.host.name}",
                           title=f"Wait for etcd healthy on the members that stay ({len(self.staying)})")
        return PhasePlan.of(self, [(self.via.name, [gate])])


def quorum_gate(cluster: Cluster, via: Host, staying: tuple[Host, ...], host: Host) -> PhasePlan:
    return GateEtcdQuorum(via, staying, host).plan(cluster)


def delete_node_phase(cluster: Cluster, host: Host, stamp: str) -> PhasePlan:
    """The old Node object goes before the new machine joins under the same name (reset's phase)."""
    return RemoveNodeObjects().plan(ResetContext(cluster, (host,), False, stamp, True))


# Before `up`'s phases for the new machine, in order: the gate, the dead member's removal (stacked
# etcd; external etcd: `etcd members`' phases), the old Node object.
PHASES = (GateEtcdQuorum, RemoveEtcdMember, RemoveNodeObjects())
