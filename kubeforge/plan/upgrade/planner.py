"""The upgrade planner: the phases of one hop, in the order that is the product, and the plan of a
whole path (later hops shown as they will be planned once the earlier ones are done).

    plan = plan_hop(cluster, facts, KubeVersion(1, 34, 2), backup=fn)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubeforge.model import Cluster, RenderedFile
from kubeforge.model.versions import KubeVersion
from kubeforge.plan.endpoint.drain import ready_drained_phases
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.upgrade.backup_etcd import BackupEtcd
from kubeforge.plan.upgrade.check_removed_apis import CheckRemovedAPIs
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.plan.upgrade.prepare_images import PrepareImages
from kubeforge.plan.upgrade.record_applied import RecordApplied
from kubeforge.plan.upgrade.state import UpgradeFacts, after_hop
from kubeforge.plan.upgrade.switch_package_source import SwitchPackageSource
from kubeforge.plan.upgrade.upgrade_control_planes import UpgradeControlPlanes
from kubeforge.plan.upgrade.upgrade_first_control_plane import UpgradeFirstControlPlane
from kubeforge.plan.upgrade.upgrade_workers import UpgradeWorkers
from kubeforge.plan.upgrade.verify_versions import VerifyVersions
from kubeforge.render.context import cluster_context
from kubeforge.render.kubeadm import render_upgrade
from kubeforge.render.packages import render_packages

# Backup first, then the hop's images on every node at once (offline bundle only: pushed and imported
# before any node's drain window), then sources, then the first control plane (the only `upgrade apply`), the other
# control planes one at a time, workers in batches, a final check, and the record `up` reads.
# Before them, only when --allow-removed-apis let a hop through with objects in versions it stops
# serving: the warning.
WARNINGS = (CheckRemovedAPIs(),)
PHASES = (
    BackupEtcd(),
    PrepareImages(),
    SwitchPackageSource(),
    UpgradeFirstControlPlane(),
    UpgradeControlPlanes(),
    UpgradeWorkers(),
    VerifyVersions(),
    RecordApplied(),
)

# What `up` renders for every host at a version (kubeforge.workflows.up.files_at): the upgrade
# writes what a new minor changes in each node's own drain window, and records it.
NodeFiles = Callable[[KubeVersion], Mapping[str, Sequence[RenderedFile]]]


def workflow_name(target: KubeVersion) -> str:
    """The journal's workflow: one per requested target, whatever hops it takes."""
    return f"upgrade {target}"


def hop_files(cluster: Cluster, version: KubeVersion) -> dict[str, list[RenderedFile]]:
    """Per node: the package source and pin for ``version`` and its kubeadm UpgradeConfiguration."""
    ctx = cluster_context(cluster, version)
    out: dict[str, list[RenderedFile]] = {}
    for host in cluster.nodes:
        files = list(render_packages(ctx, host, version))
        upgrade = render_upgrade(ctx, host)
        if upgrade is not None:
            files.append(upgrade)
        out[host.name] = files
    return out


def hop_phases(
    cluster: Cluster,
    facts: UpgradeFacts,
    version: KubeVersion,
    *,
    backup: Callable[[], Any] | None = None,
    backup_unavailable: str = "no backup function was given",
    hop: int = 1,
    hops: int = 1,
    node_files: NodeFiles | None = None,
    journaled: frozenset[str] = frozenset(),
) -> list[PhasePlan]:
    ctx = UpgradeContext(cluster, facts, version, hop_files(cluster, version), backup, backup_unavailable, hop, hops,
                         node_files=node_files(version) if node_files is not None else {}, journaled=journaled)
    warnings = [w for w in (phase.plan(ctx) for phase in WARNINGS) if not w.is_noop]
    # an API server an interrupted run left drained on haproxy is re-enabled before anything else
    return warnings + ready_drained_phases(cluster, facts.drained_backends) + [phase.plan(ctx) for phase in PHASES]


def plan_hop(cluster: Cluster, facts: UpgradeFacts, version: KubeVersion, *, target: KubeVersion | None = None,
             hop: int = 1, hops: int = 1, **kwargs: Any) -> Plan:
    """The plan of one hop, under the workflow name of the whole upgrade (``target``). ``kwargs``:
    hop_phases' backup, backup_unavailable, node_files and journaled."""
    return Plan(workflow_name(target or version), tuple(hop_phases(cluster, facts, version, hop=hop, hops=hops, **kwargs)))


def plan_path(cluster: Cluster, facts: UpgradeFacts, path: Sequence[KubeVersion], target: KubeVersion, **backup: Any) -> Plan:
    """Every hop of ``path`` in one plan, for showing and confirming. Hop n+1 is planned from the
    facts hop n leaves behind; before it runs it is planned again from fresh facts."""
    if not path:
        # Nothing left to do: the no-op phases say why.
        return Plan(workflow_name(target), tuple(hop_phases(cluster, facts, target, **backup)))
    phases: list[PhasePlan] = []
    cps = [h.name for h in cluster.control_planes]
    for i, version in enumerate(path, 1):
        phases += hop_phases(cluster, facts, version, hop=i, hops=len(path), **backup)
        facts = after_hop(facts, version, cps)
    return Plan(workflow_name(target), tuple(phases))
