"""`kubeforge node remove`: hosts that are still in the inventory leave the cluster — drained, their
etcd member removed, the balancers updated, the hosts reset — through the run engine.
`kubeforge node replace`: a dead machine's blank replacement at the same address takes its place.

    plan, report = node_remove(cluster, pool, options, names=["worker-3"], confirm=..., run_dir=..., log_path=...)
    cluster = replacement_host_key(cluster, "etcd-3", accept_new=True)   # before the pool is made
    plan, report = node_replace(cluster, pool, options, name="etcd-3", confirm=..., run_dir=..., log_path=...)

The inventory is the source of how to reach a host, so the leaving hosts stay in it while this runs
(kubeforge plans as if they were gone) and the operator deletes them from it afterwards; a later
`up` with them still listed would join them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import CheckFailed, HostKeyError, SafetyRefusal, TransportError, UsageError
from kubeforge.execute import Events, Report, RunOptions, execute
from kubeforge.facts.cluster import probe_cluster
from kubeforge.facts.etcdctl import peer_url
from kubeforge.facts.machine import joined, reach
from kubeforge.model import Cluster, EtcdTopology, Host
from kubeforge.model.cluster import HostKeyPolicy
from kubeforge.plan.etcd.membership import decide
from kubeforge.plan.node.remove import RemovalInput, check_removal, next_step, plan_node_remove, without
from kubeforge.plan.node.replace import (
    WORKFLOW as REPLACE,
)
from kubeforge.plan.node.replace import (
    HostHealth,
    check_target,
    delete_node_phase,
    quorum_gate,
    refuse_below_quorum,
    refuse_if_healthy,
    stacked_member_phases,
    target_member,
)
from kubeforge.plan.phase import Plan
from kubeforge.workflows.common import site

__all__ = ["next_step", "node_remove", "node_replace", "plan_for_node_remove", "plan_for_node_replace",
           "replacement_host_key"]


def _selected(cluster: Cluster, names: Sequence[str]):
    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        raise UsageError(f"node remove: name at least one host of {cluster.source.name} "
                         f"(hosts: {', '.join(h.name for h in cluster.hosts)})")
    known = {h.name for h in cluster.hosts}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UsageError(
            f"node remove: no host named {', '.join(repr(n) for n in unknown)} in {cluster.source.name} "
            f"(hosts: {', '.join(h.name for h in cluster.hosts)})",
            hint="a leaving host stays in the inventory until `node remove` has run (kubeforge reaches it from there); "
                 "delete it from the inventory afterwards",
        )
    return cluster.select(wanted)


log = logging.getLogger("kubeforge.workflows.node")


def _etcd_members(cluster: Cluster, pool, leaving) -> tuple:
    """etcd's own member list, checked against the inventory: removing exactly these members must
    keep a quorum of healthy voters (membership.decide's rules), and nothing else may differ."""
    from kubeforge.workflows.etcd.members import read_listed_members

    listed = read_listed_members(cluster, pool, "an etcd member")
    change = decide(without(cluster, frozenset(h.name for h in leaving)), listed)
    urls = {peer_url(cluster, h) for h in leaving}
    stray = [m.name or m.peer_url for m in change.remove if m.peer_url not in urls]
    if change.add or change.pending or stray:
        differ = [h.name for h in change.add + change.pending] + stray
        raise SafetyRefusal(f"etcd's members differ from the inventory beyond this removal ({', '.join(differ)}); "
                            "nothing was changed",
                            hint="converge them first (`kubeforge up`, or `kubeforge etcd members` for external etcd)")
    return listed


def plan_for_node_remove(cluster: Cluster, pool, *, names: Sequence[str], drain_timeout_s: int | None = None,
                         allow_below_quorum: bool = False, now: datetime | None = None) -> Plan:
    leaving = _selected(cluster, names)
    check_removal(cluster, leaving, allow_below_quorum=allow_below_quorum)
    state = probe_cluster(cluster, pool)
    first = cluster.first_control_plane.name
    if not state.initialized:
        raise CheckFailed(f"the API server did not answer on {first} ({state.problem or 'no cluster there'}): "
                          "nodes cannot be drained; nothing was changed",
                          hint="bring the control plane back first (kubeforge up); a dead machine is `node replace`'s case")
    members = _etcd_members(cluster, pool, leaving) if any(h in cluster.etcd_members for h in leaving) else ()
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    inp = RemovalInput(cluster, tuple(leaving), stamp, True, members, drain_timeout_s)
    return plan_node_remove(inp, frozenset(state.nodes))


def node_remove(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    names: Sequence[str],
    confirm: Callable[[Plan], bool],
    drain_timeout_s: int | None = None,
    allow_below_quorum: bool = False,
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    show: Callable[[Plan], None] | None = None,
) -> tuple[Plan, Report | None]:
    """Refuses (SafetyRefusal, exit 7) before anything runs when what stays would fall short.
    Report None: the operator declined."""
    plan = plan_for_node_remove(cluster, pool, names=names, drain_timeout_s=drain_timeout_s,
                                allow_below_quorum=allow_below_quorum)
    run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                  events=events, show=show)
    return plan, run.report if run else None


def _one(cluster: Cluster, name: str) -> Host:
    if not name:
        raise UsageError(f"node replace: name the host whose machine died (hosts of {cluster.source.name}: "
                         f"{', '.join(h.name for h in cluster.hosts)})")
    host = next((h for h in cluster.hosts if h.name == name), None)
    if host is None:
        raise UsageError(f"node replace: no host named {name!r} in {cluster.source.name} "
                         f"(hosts: {', '.join(h.name for h in cluster.hosts)})",
                         hint="the replacement takes the dead host's inventory entry (name, address, roles)")
    return host


def replacement_host_key(cluster: Cluster, name: str, *, accept_new: bool) -> Cluster:
    """``--accept-new-host-key``: the replacement machine has a new SSH host key. The keys known_hosts
    holds for exactly this host's address are removed (as ``ssh-keygen -R``) and the key it presents
    now is recorded (accept-new, for this host only; the new fingerprint is logged). Every other host
    keeps the inventory's policy. A key pinned in the inventory is the operator's to change."""
    from kubeforge.transport.hostkeys import known_hosts_name
    from kubeforge.transport.known_hosts import forget_host

    host = _one(cluster, name)
    if not accept_new:
        return cluster
    if host.host_key:
        raise UsageError(f"{host.origin or name}: {name}'s host key is pinned in the inventory (hostKey): "
                         "--accept-new-host-key does not override a pin",
                         hint="verify the new machine's key out of band and put it in hostKey")
    known = host.ssh.known_hosts or Path.home() / ".ssh" / "known_hosts"
    removed = forget_host(known, known_hosts_name(host.address, host.ssh.port))
    if removed:
        log.warning("%s: old host keys removed from %s (%s); the replacement's key is recorded on first contact",
                    name, known, ", ".join(removed), extra={"host": name})
    trusting = replace(host, ssh=replace(host.ssh, host_key_policy=HostKeyPolicy.ACCEPT_NEW))
    return replace(cluster, hosts=tuple(trusting if h.name == name else h for h in cluster.hosts))


def _reach(pool, host: Host) -> bool:
    try:
        reach(pool.get(host))
        return True
    except HostKeyError as exc:
        raise HostKeyError(host.name, exc.message.removeprefix(f"[{host.name}] "),
                           hint=f"if {host.name} is the replacement machine (a new host key is expected), run again "
                                f"with --accept-new-host-key; otherwise: {exc.hint}") from None
    except TransportError:
        return False


def _joined(pool, host: Host) -> bool:
    return joined(pool.get(host))


def _health(cluster: Cluster, pool, host: Host):
    """HostHealth, etcd's member list (etcd member hosts) and the API's nodes (Kubernetes nodes)."""
    from kubeforge.workflows.etcd.members import listed_members
    from kubeforge.workflows.etcd.status import gather_status

    if not _reach(pool, host):
        raise CheckFailed(f"{host.name} ({host.address}) does not answer over SSH: `node replace` joins the "
                          "replacement machine at the inventory's address; nothing was changed",
                          hint=f"bring the new machine up at {host.address} with the inventory's SSH access first",
                          unreachable=(host.name,))
    etcd_healthy = node_ready = None
    listed: tuple = ()
    if host in cluster.etcd_members:
        status = gather_status(cluster, pool)
        if not status.member_list:
            raise CheckFailed("no etcd member answers with the cluster's member list: an etcd member cannot be "
                              "replaced blind; nothing was changed", hint="kubeforge etcd status")
        listed = tuple(listed_members(cluster, pool, status))
        mine = next((m for m in status.members if m.name == host.name), None)
        etcd_healthy = bool(mine and mine.healthy and target_member(cluster, host, listed) is not None)
    nodes: frozenset[str] = frozenset()
    if host.is_control_plane or host.is_worker:
        state = probe_cluster(cluster, pool)
        if not state.initialized:
            raise CheckFailed(f"the API server did not answer on {cluster.first_control_plane.name} "
                              f"({state.problem or 'no cluster there'}): the replacement cannot join; nothing was changed",
                              hint="bring the control plane back first")
        node = state.nodes.get(host.name)
        nodes = frozenset(state.nodes)
        node_ready = bool(node and node.ready and _joined(pool, host))
    return HostHealth(True, etcd_healthy, node_ready), listed, nodes


def _etcd_plan(cluster: Cluster, pool, host: Host, listed) -> Plan:
    """External etcd: `etcd members`' replace (removed, added as a learner, promoted, gated), with a
    quorum gate before the removal. A member an earlier run removed already is simply added again."""
    from kubeforge.workflows.etcd.members import plan_members

    mine = target_member(cluster, host, listed)
    started = mine is not None and bool(mine.name) and not mine.learner
    plan, _ = plan_members(cluster, pool, lost=frozenset({host.name}) if started else frozenset())
    phases = list(plan.phases)
    if started:
        staying = tuple(h for h in cluster.etcd_members if h.name != host.name)
        healthy = {m.name for m in listed if m.healthy}
        via = next((h for h in staying if h.name in healthy), staying[0])
        phases.insert(0, quorum_gate(cluster, via, staying, host))
    return Plan(REPLACE, tuple(phases))


def _kube_plan(cluster: Cluster, pool, host: Host, listed, stamp: str, *, facts=None) -> Plan:
    """The old Node (and stacked etcd member) gone, then `up`'s plan, which joins the blank machine
    with a fresh token (and the control-plane certificates uploaded again for a control plane)."""
    from kubeforge.workflows.up import plan_for_up, run_preflight_gate

    if facts is None:
        _, facts = run_preflight_gate(cluster, pool)
    up_plan, _ = plan_for_up(cluster, pool, facts=facts)
    phases = [*stacked_member_phases(cluster, host, listed), delete_node_phase(cluster, host, stamp), *up_plan.phases]
    return Plan(REPLACE, tuple(phases))


def plan_for_node_replace(cluster: Cluster, pool, *, name: str, force: bool = False, now: datetime | None = None):
    """(the first plan, the later stages or None). Refusals (exit 7) and failed checks (4, or 5 when
    the replacement does not answer) come before anything is touched."""
    host = _one(cluster, name)
    check_target(cluster, host)
    health, listed, _ = _health(cluster, pool, host)
    refuse_if_healthy(host, health, force=force)
    if host in cluster.etcd_members:
        refuse_below_quorum(cluster, host, listed)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    external_member = cluster.etcd.topology is EtcdTopology.EXTERNAL and host in cluster.etcd_members
    kube = host.is_control_plane or host.is_worker
    if external_member and kube:
        # up's plan refuses an etcd member whose data is gone: it is planned once the member is back
        def later():
            yield _kube_plan(cluster, pool, host, (), stamp)
        return _etcd_plan(cluster, pool, host, listed), later
    if external_member:
        return _etcd_plan(cluster, pool, host, listed), None
    return _kube_plan(cluster, pool, host, listed, stamp), None


def node_replace(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    name: str,
    confirm: Callable[[Plan], bool],
    force: bool = False,
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    show: Callable[[Plan], None] | None = None,
) -> tuple[Plan, Report | None]:
    """Report None: the operator declined. With a later stage (an external etcd member that is also
    a Kubernetes node), the report is the last stage's."""
    plan, later = plan_for_node_replace(cluster, pool, name=name, force=force)
    stages = None
    if later is not None:
        def stages():
            yield plan
            yield from later()
    run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                  events=events, show=show, stages=stages)
    return plan, run.report if run else None
