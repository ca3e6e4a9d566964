"""`kubeforge upgrade --to X.Y.Z`: facts -> refusals -> plan -> confirm -> one hop at a time.

    plan = plan_upgrade(Path("inventory.yaml"), "1.34.2", pool=pool)     # `kubeforge plan upgrade`
    outcome = upgrade(cluster, pool, RunOptions("kubeforge upgrade ..."), to="1.35.1", multi_hop=True,
                      confirm=confirmer, run_dir=run_log.dir, log_path=run_log.path)

Per hop: verified etcd backup -> package source -> first control plane (`upgrade apply`) -> other
control planes one at a time -> workers in batches -> verify. Before each hop the facts are read
again and the hop planned from them, so a hop never trusts what the previous one was expected to
leave. One journal for the whole run; ``resume`` reopens it and skips every step it has as done.
Dry-run takes no lock and runs nothing on any host beyond the read-only facts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubeforge.errors import SafetyRefusal, TransportError, UsageError
from kubeforge.execute import Events, Report, RunOptions, completed_steps, execute
from kubeforge.facts.cluster import Node
from kubeforge.facts.removed_apis import run_removed_apis_scan
from kubeforge.facts.upgrade import read_machines, read_nodes, read_offered
from kubeforge.model import Cluster, EtcdTopology, PackageSourceKind
from kubeforge.model.images import images_by_host
from kubeforge.model.removed_apis import removed_between
from kubeforge.model.versions import KubeVersion, VersionError, parse_kube
from kubeforge.plan.bundle import load_bundle, offered_kubernetes
from kubeforge.plan.bundle_images import load_image_part, require_images
from kubeforge.plan.phase import Plan
from kubeforge.plan.upgrade import (
    UpgradeFacts,
    check_removed_apis,
    check_upgrade_safety,
    hop_files,
    minors_to_read,
    plan_hop,
    plan_path,
    workflow_name,
)
from kubeforge.render.packages import KUBERNETES_LIST
from kubeforge.workflows.common import site

log = logging.getLogger("kubeforge.upgrade")


@dataclass
class UpgradeOutcome:
    target: KubeVersion
    path: list[KubeVersion]  # the hops this run had left to do when it started
    plan: Plan  # the whole plan as shown (later hops projected)
    reports: list[Report] = field(default_factory=list)  # one per hop that ran (one for a dry run)
    run_id: str = ""
    backups: list[Any] = field(default_factory=list)  # BackupResult of every hop


def parse_target(to: str) -> KubeVersion:
    try:
        return parse_kube(to)
    except VersionError as exc:
        raise UsageError(f"--to: {exc}") from None


# --- facts -----------------------------------------------------------------------------------------

def gather_upgrade_facts(cluster: Cluster, pool, *, etcd: bool = True) -> UpgradeFacts:
    """Versions on every node (packages, holds, API server manifests), the nodes as the API sees
    them, and etcd health. Read-only."""
    machines, unreachable = read_machines(pool, cluster.nodes)
    api_problem = None
    api: dict[str, Node] = {}
    first = cluster.first_control_plane
    if first.name not in unreachable:
        try:
            api, api_problem = read_nodes(pool.get(first))
        except TransportError as exc:
            unreachable[first.name] = exc.message
    etcd_problems: tuple[str, ...] = ()
    etcd_versions: dict[str, str] = {}
    # Stacked members too: kubeadm restarts each control plane's member on the etcd its new minor
    # pins, so an unhealthy member before the upgrade is quorum lost during it.
    if etcd and cluster.etcd_members:
        from kubeforge.workflows.etcd.status import gather_status

        status = gather_status(cluster, pool, limit=cluster.parallelism)
        etcd_problems = tuple(f"{m.name}: {m.error or 'unhealthy'}" for m in status.members if not m.healthy)
        if cluster.etcd.topology is EtcdTopology.EXTERNAL:  # kubeadm's MinExternalEtcdVersion applies to these only
            etcd_versions = {m.name: m.version for m in status.members if m.version}
    from kubeforge.facts.haproxy_drains import read_drained

    return UpgradeFacts(machines=machines, nodes=api, api_problem=api_problem, unreachable=unreachable,
                        etcd_problems=etcd_problems, etcd_versions=etcd_versions,
                        drained_backends=read_drained(cluster, pool))


def source_name(cluster: Cluster, minors: Sequence[KubeVersion] = ()) -> str:
    """Which package source the offered versions come from, as the plan and refusals name it."""
    src = cluster.packages
    which = ", ".join(f"v{v.minor_str}" for v in minors)
    if src.kind is PackageSourceKind.OFFLINE:
        return f"the offline bundle {src.bundle_dir} (its Packages index)"
    if src.kind is PackageSourceKind.MIRROR:
        return f"the mirror {src.mirror_url} (kubernetes/{{{which}}}/deb Packages)" if which else f"the mirror {src.mirror_url}"
    base = src.upstream_url.rstrip("/")
    return f"{base} (per-minor repositories {which})" if which else base


def offered_versions(cluster: Cluster, pool, path: list[KubeVersion]) -> frozenset[KubeVersion] | None:
    """The kubeadm versions the package source offers for the minors of ``path``, read on the first
    control plane in a throw-away apt state (apt reads each minor's Packages index). With an offline
    bundle, read from its verified index on this machine: the versions it has kubeadm, kubelet and
    kubectl for (a bundle that does not match its index is refused here, exit 3, before any host is
    touched)."""
    if cluster.packages.kind is PackageSourceKind.OFFLINE:
        bundle = load_bundle(cluster)
        assert bundle is not None
        return frozenset(v for s in offered_kubernetes(bundle) if (v := _kube_or_none(s)) is not None)
    if not path:
        return None
    first = cluster.first_control_plane
    lists = []
    for v in path:
        f = next(f for f in hop_files(cluster, v)[first.name] if f.path == KUBERNETES_LIST)
        lists.append(f.content.decode())
    offered, tail = read_offered(pool.get(first), "\n".join(lists))
    if offered is None:
        raise SafetyRefusal(
            f"cannot read the package source for Kubernetes {', '.join(v.minor_str for v in path)} on {first.name}: "
            + " / ".join(tail)[:400],
            hint="check packages.mirrorURL / the upstream repository and the host's network; nothing was changed",
        )
    return offered


def _kube_or_none(text: str) -> KubeVersion | None:
    try:
        return parse_kube(text)
    except VersionError:
        return None  # a package of the bundle kubeforge does not know as a Kubernetes version


def scan_removed_apis(cluster: Cluster, pool, facts: UpgradeFacts, path: list[KubeVersion]) -> UpgradeFacts:
    """The removed-API scan on the first control plane, for every minor the path moves into (read-only).
    Skipped when no minor of the path stops serving anything."""
    versions = [m.apiserver for m in facts.machines.values() if m.apiserver is not None]
    if not path or not versions:
        return facts
    apis = removed_between(min(versions).minor_key, max(path).minor_key)
    if not apis:
        return facts
    first = cluster.first_control_plane
    try:
        scan = run_removed_apis_scan(pool.get(first), apis, host=first.name)
    except ValueError as exc:
        raise SafetyRefusal(f"cannot scan for objects in removed API versions on {first.name}: {exc}",
                            hint="is kubectl working with /etc/kubernetes/admin.conf there? Nothing was changed") from None
    return replace(facts, removed_apis=scan)


def check(cluster: Cluster, pool, target: KubeVersion, multi_hop: bool, *,
          known: UpgradeFacts | None = None, allow_removed_apis: bool = False) -> tuple[UpgradeFacts, list[KubeVersion]]:
    """Facts, then every refusal; returns the facts and the hops left. The package source of every
    minor the upgrade enters is read before the path is chosen (an intermediate minor is crossed at
    the newest patch it offers); ``known``: facts whose source reading is reused (later hops). Before
    any hop, the removed-API scan (refused unless ``allow_removed_apis``)."""
    # An offline bundle is checked against its index first: a bad one is refused before any host is asked.
    load_bundle(cluster)
    images = load_image_part(cluster)
    facts = gather_upgrade_facts(cluster, pool)
    minors = minors_to_read(cluster, facts, target)
    if minors:
        if known is not None and known.offered is not None:
            facts = replace(facts, offered=known.offered, offered_from=known.offered_from)
        else:
            facts = replace(facts, offered=offered_versions(cluster, pool, minors),
                            offered_from=source_name(cluster, minors))
    path = check_upgrade_safety(cluster, facts, target, multi_hop=multi_hop)
    if images is not None:  # a bundle that carries images must carry every hop's (exit 7)
        for version in path:
            require_images(images, images_by_host(cluster, version))
    if path and known is None:  # every hop's images present, in the bundle or their registry answering (exit 4)
        from kubeforge.workflows.preflight_images import check_needed_images

        needed: dict[str, set] = {}
        for version in path:
            for host, imgs in images_by_host(cluster, version).items():
                needed.setdefault(host, set()).update(imgs)
        check_needed_images(cluster, pool, needed)
    facts = scan_removed_apis(cluster, pool, facts, path)
    check_removed_apis(facts, path, allow=allow_removed_apis)
    if path:
        log.info("upgrade path %s (patches offered by %s)", " -> ".join(map(str, path)), facts.offered_from)
    return facts, path


# --- planning --------------------------------------------------------------------------------------

def backup_step_fn(cluster: Cluster, pool, sink: list | None = None) -> Callable[[], Any]:
    """What the BackupEtcd step runs: take_backup verifies the snapshot and raises when it does not."""

    def run() -> Any:
        from kubeforge.workflows.etcd.backup import options_from_cluster, take_backup

        result = take_backup(cluster, pool, options_from_cluster(cluster))
        log.info("etcd backup %s verified (%s)", result.manifest.name, result.path)
        if sink is not None:
            sink.append(result)
        return result

    return run


def _backup_kwargs(cluster: Cluster, pool, sink: list | None) -> dict:
    if cluster.etcd.topology is EtcdTopology.STACKED:
        return {"backup": None, "backup_unavailable": "stacked etcd: kubeadm backs up its static-pod etcd during "
                "`upgrade apply` and moves it to the etcd its minor ships (`kubeforge version -o json`: kubeadmEtcd)"}
    return {"backup": backup_step_fn(cluster, pool, sink)}


def _hop_kwargs(cluster: Cluster, pool, sink: list | None) -> dict:
    """What every hop is planned with: the backup, and the files `up` renders at the hop's version
    (written in each node's drain window and recorded, so `up` afterwards plans nothing)."""
    from kubeforge.workflows.up import files_at

    return {**_backup_kwargs(cluster, pool, sink), "node_files": lambda version: files_at(cluster, version)}


def plan_upgrade(cluster_path: Path | str, to: str, multi_hop: bool = False, *, pool=None,
                 allow_removed_apis: bool = False) -> Plan:
    """The whole upgrade plan for ``kubeforge plan upgrade``: loads the inventory, reads the facts
    (read-only), refuses what `upgrade` would refuse, and plans every hop."""
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool

    target = parse_target(to)
    cluster = load_cluster(Path(cluster_path))
    own = pool is None
    pool = pool or TransportPool(cluster)
    try:
        facts, path = check(cluster, pool, target, multi_hop, allow_removed_apis=allow_removed_apis)
        return plan_path(cluster, facts, path, target, **_hop_kwargs(cluster, pool, None))
    finally:
        if own:
            pool.close()


# --- running ---------------------------------------------------------------------------------------

def upgrade(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    to: str,
    multi_hop: bool = False,
    allow_removed_apis: bool = False,
    confirm: Callable[[Plan], bool] = lambda plan: True,
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    on_path: Callable[[list[KubeVersion]], None] | None = None,
    show: Callable[[Plan], None] | None = None,
) -> UpgradeOutcome | None:
    """Run the upgrade; None when the operator declined. Raises SafetyRefusal before anything
    changed, ExecutionFailed / Interrupted (each with its report) when a hop stopped.

    Through the run engine like every mutating workflow: the whole plan is made and confirmed
    before the locks and the journal exist, so a declined or refused plan leaves nothing to resume.
    Hops after the first are planned again from fresh facts, under the locks, right before they run."""
    target = parse_target(to)
    workflow = workflow_name(target)
    # nothing to resume: say so before any facts. What the resumed run did also plans a node it left
    # drained at the version back into service, and its hop's record (planner: journaled)
    journaled = completed_steps(cluster.runs_dir, workflow, options.resume)
    facts, path = check(cluster, pool, target, multi_hop, allow_removed_apis=allow_removed_apis)
    if on_path:
        on_path(path)
    backups: list = []
    kwargs = {**_hop_kwargs(cluster, pool, backups), "journaled": journaled}
    plan = plan_path(cluster, facts, path, target, **kwargs)
    outcome = UpgradeOutcome(target, path, plan, backups=backups)

    def hops():
        if not path:
            yield plan
            return
        for i, version in enumerate(path, 1):
            # Plan from what the machines say now, not from what the last hop was expected to leave.
            hop_facts = facts if i == 1 else check(cluster, pool, target, multi_hop, known=facts,
                                                   allow_removed_apis=allow_removed_apis)[0]
            hop = plan_hop(cluster, hop_facts, version, target=target, hop=i, hops=len(path), **kwargs)
            log.info("hop %d of %d: %s", i, len(path), hop.summary())
            yield hop

    run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                  events=events, show=show, stages=hops)
    if run is None:
        return None
    outcome.reports, outcome.run_id = run.reports, run.run_id
    return outcome
