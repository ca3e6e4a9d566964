"""`kubeforge etcd upgrade --to X.Y.Z`: refuse what is unsafe, snapshot, roll member by member.

Refused before anything runs: stacked etcd (kubeadm upgrades it), a downgrade or an unsupported
minor (etcd_upgrade_path), members on different versions, a cluster that is not fully healthy, and
an unfinished Kubernetes upgrade (its journal has no successful end): the two never overlap.
"""

from __future__ import annotations

from pathlib import Path

from kubeforge.errors import CheckFailed, SafetyRefusal
from kubeforge.execute.journal import latest_unfinished, run_summary
from kubeforge.model import Cluster
from kubeforge.model.upgrade_path import etcd_upgrade_path
from kubeforge.model.versions import parse_etcd
from kubeforge.plan.etcd.upgrade import upgrade_phases
from kubeforge.plan.phase import Plan
from kubeforge.workflows.etcd.common import gather_member_facts, require_external
from kubeforge.workflows.etcd.status import gather_status


def unfinished_kubernetes_upgrade(runs_dir: Path) -> str | None:
    """The run id of an unfinished `upgrade X.Y.Z` (Kubernetes) run, if any."""
    if not runs_dir.is_dir():
        return None
    workflows = {run_summary(p).get("workflow") for p in runs_dir.iterdir() if p.is_dir()}
    for wf in sorted(w for w in workflows if isinstance(w, str) and w.startswith("upgrade ")):
        run = latest_unfinished(runs_dir, wf)
        if run:
            return run
    return None


def plan_upgrade(cluster: Cluster, pool, target: str, snapshot) -> Plan:
    require_external(cluster, "upgrade")
    run = unfinished_kubernetes_upgrade(cluster.runs_dir)
    if run:
        raise SafetyRefusal(f"a Kubernetes upgrade is unfinished (run {run}); etcd and Kubernetes upgrades never overlap",
                            hint="finish it with `kubeforge upgrade --resume` first")
    want = parse_etcd(target)
    facts = gather_member_facts(cluster, pool)
    versions = {f.version for f in facts.values() if f}
    if None in versions:
        raise SafetyRefusal("etcd is not installed on every member", hint="run `kubeforge etcd install` first")
    if len(versions) != 1:
        raise SafetyRefusal(f"members run different etcd versions ({', '.join(sorted(map(str, versions)))}); "
                            "finish or undo the interrupted upgrade first")
    current = parse_etcd(versions.pop())
    hops = etcd_upgrade_path(current, want)
    status = gather_status(cluster, pool)
    if not status.all_healthy:
        bad = ", ".join(m.name for m in status.members if not m.healthy) or "alarms: " + "; ".join(status.alarms)
        raise CheckFailed(f"etcd is not fully healthy ({bad}); an upgrade starts only from a healthy cluster")
    leader = status.leader.name if status.leader else None
    return Plan(f"etcd upgrade {want}", tuple(upgrade_phases(cluster, hops, leader, snapshot)))
