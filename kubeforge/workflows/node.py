"""`kubeforge node remove`: hosts that are still in the inventory leave the cluster — drained, their
etcd member removed, the balancers updated, the hosts reset — through the run engine.

    plan, report = node_remove(cluster, pool, options, names=["worker-3"], confirm=..., run_dir=..., log_path=...)

The inventory is the source of how to reach a host, so the leaving hosts stay in it while this runs
(kubeforge plans as if they were gone) and the operator deletes them from it afterwards; a later
`up` with them still listed would join them again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import CheckFailed, SafetyRefusal, UsageError
from kubeforge.execute import Events, Report, RunOptions, execute
from kubeforge.model import Cluster
from kubeforge.plan.etcd.ctl import peer_url
from kubeforge.plan.etcd.membership import decide
from kubeforge.plan.node.remove import RemovalInput, check_removal, next_step, plan_node_remove, without
from kubeforge.plan.phase import Plan
from kubeforge.workflows.common import probe_cluster, site

__all__ = ["next_step", "node_remove", "plan_for_node_remove"]


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


def _etcd_members(cluster: Cluster, pool, leaving) -> tuple:
    """etcd's own member list, checked against the inventory: removing exactly these members must
    keep a quorum of healthy voters (membership.decide's rules), and nothing else may differ."""
    from kubeforge.workflows.etcd.members import listed_members
    from kubeforge.workflows.etcd.status import gather_status

    status = gather_status(cluster, pool)
    if not status.member_list:
        down = "; ".join(f"{m.name}: {m.error or 'no answer'}" for m in status.members)
        raise CheckFailed(f"no etcd member answers with the cluster's member list ({down}); an etcd member cannot "
                          "be removed blind; nothing was changed",
                          unreachable=tuple(m.name for m in status.members if not m.reachable))
    listed = tuple(listed_members(cluster, pool, status))
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
