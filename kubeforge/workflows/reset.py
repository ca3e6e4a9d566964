"""`kubeforge reset`: which hosts, whether that is safe, the plan, confirmation, the executor.

    plan, report = reset(cluster, pool, options, hosts=["worker-2"], purge=False, confirm=..., ...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.execute import Events, Report, RunOptions, execute
from kubeforge.facts.cluster import probe_cluster
from kubeforge.model import Cluster
from kubeforge.plan.phase import Plan
from kubeforge.plan.reset import ResetContext, plan_reset
from kubeforge.plan.reset.safety import check_reset_selection
from kubeforge.workflows.common import site
from kubeforge.workflows.facts import select_hosts


def plan_for_reset(cluster: Cluster, pool, *, hosts: Sequence[str] | None, purge: bool, now: datetime | None = None) -> Plan:
    chosen = tuple(select_hosts(cluster, hosts))
    check_reset_selection(cluster, chosen)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    whole = {h.name for h in chosen} >= {h.name for h in cluster.hosts}
    reachable = False if whole else probe_cluster(cluster, pool).initialized
    return plan_reset(ResetContext(cluster, chosen, purge, stamp, reachable))


def reset(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    hosts: Sequence[str] | None,
    purge: bool,
    confirm: Callable[[Plan], bool],
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    show: Callable[[Plan], None] | None = None,
) -> tuple[Plan, Report | None]:
    """Refuses (SafetyRefusal) a selection that would break etcd quorum or orphan the cluster,
    before anything runs. Report None: the operator declined."""
    plan = plan_for_reset(cluster, pool, hosts=hosts, purge=purge)
    run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                  events=events, show=show)
    return plan, run.report if run else None
