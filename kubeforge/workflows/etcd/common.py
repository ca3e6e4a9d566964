"""What every etcd workflow shares: member facts, the cluster's own view, running a plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kubeforge.errors import CheckFailed, SafetyRefusal
from kubeforge.execute import Events, Report, RunOptions, Site, execute
from kubeforge.facts.etcd import EtcdHostFacts, gather_member_facts  # noqa: F401  (gather_member_facts: workflows/certs.py imports it from here)
from kubeforge.model import Cluster, EtcdTopology, Host, RenderedFile
from kubeforge.plan.phase import Plan
from kubeforge.render.context import ClusterContext, cluster_context
from kubeforge.render.etcd import render_etcd


def require_external(cluster: Cluster, what: str) -> None:
    if cluster.etcd.topology is EtcdTopology.STACKED:
        raise StackedEtcd(
            f"etcd of cluster {cluster.name} is stacked: kubeadm runs it as a static pod on the control planes, "
            f"so `kubeforge etcd {what}` has nothing to do (kubeforge up and upgrade manage it)"
        )


class StackedEtcd(SafetyRefusal):
    """Not an error of the operator's: the CLI prints it and exits 0."""

    exit_code = 0


def member_etcd_files(ctx: ClusterContext, host: Host, facts: EtcdHostFacts | None, *,
                      state: str = "new", initial_cluster: str | None = None, token: str | None = None) -> list[RenderedFile]:
    """etcd.env + etcd.service of a member. A member that already holds data keeps the bootstrap
    values (ETCD_INITIAL_*) it was started with: etcd ignores them once bootstrapped, and keeping
    them means a re-run rewrites nothing and restarts nothing."""
    if facts is not None and facts.has_data and facts.initial.get("ETCD_INITIAL_CLUSTER"):
        initial_cluster = facts.initial["ETCD_INITIAL_CLUSTER"]
        state = facts.initial.get("ETCD_INITIAL_CLUSTER_STATE", state)
        token = facts.initial.get("ETCD_INITIAL_CLUSTER_TOKEN", token)
    if initial_cluster is not None:
        ctx = replace(ctx, etcd_initial_cluster=initial_cluster)
    return render_etcd(ctx, host, initial_cluster_state=state, initial_cluster_token=token)  # type: ignore[arg-type]


def etcd_pki_files(cluster: Cluster, bundle, host: Host) -> list[RenderedFile]:
    from kubeforge.pki import host_files

    return [f for f in host_files(cluster, bundle, host) if f.path.startswith("/etc/etcd/")]


def context(cluster: Cluster) -> ClusterContext:
    return cluster_context(cluster)


def lock_host(cluster: Cluster) -> Host:
    """Where etcd workflows take the cluster lock: the same host as `up` and `upgrade` (the first
    control plane), so an etcd change and a Kubernetes change never run at once."""
    return cluster.control_planes[0] if cluster.control_planes else cluster.etcd_members[0]


def execute_plan(
    cluster: Cluster,
    plan: Plan,
    pool,
    *,
    dry_run: bool = False,
    confirm: Callable[[Plan], bool] = lambda plan: True,
    events: Events | None = None,
    run_dir: Path | None = None,
    command: str = "",
    break_lock: bool = False,
    resume: str | None = None,
) -> Report | None:
    """Through the run engine (kubeforge.execute.engine): dry-run walks the plan; otherwise ask
    (unless the plan changes nothing), then under the local and the cluster lock journal and run.
    ``resume``: None for a new run, "" for the latest unfinished run of this workflow, else its id
    (its journal continues; completed steps are not repeated). ``None`` when the operator declined."""
    options = RunOptions(command or f"kubeforge {plan.workflow}", dry_run=dry_run, resume=resume,
                         break_lock=break_lock)
    where = Site(cluster.state_dir, pool, lock_host(cluster).name, run_dir=run_dir)
    run = execute(plan, where, options, confirm=confirm, events=events)
    return run.report if run else None


def check_status_quorum(status) -> None:
    if not status.has_quorum:
        down = ", ".join(f"{m.name} ({m.error or 'unhealthy'})" for m in status.members if not m.healthy)
        raise CheckFailed(f"etcd has no quorum: {status.healthy_count} of {len(status.members)} members healthy; down: {down}")
