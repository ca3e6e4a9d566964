"""`kubeforge up` and `kubeforge plan up`: facts -> preflight -> cluster state -> secrets, PKI and
files -> the Plan -> confirmation -> the executor (or the dry-run executor).

    result = up(cluster, pool, options, confirm=..., events=..., run_dir=..., log_path=...)
    plan, _ = plan_for_up(cluster, pool)         # read-only, for `kubeforge plan up`
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import CheckFailed, InputError
from kubeforge.execute import Events, Report, RunOptions, completed_steps, execute
from kubeforge.facts import HostFacts
from kubeforge.facts.cluster import probe_cluster
from kubeforge.facts.etcd import EtcdHostFacts, gather_member_facts
from kubeforge.facts.haproxy_drains import read_drained
from kubeforge.model import Cluster, EtcdTopology
from kubeforge.model.images import images_by_host
from kubeforge.model.versions import KubeVersion, parse_kube
from kubeforge.pki import ensure_pki, host_files
from kubeforge.pki.registry import read_registry_access
from kubeforge.pki.secrets import ensure_secrets, rotate_bootstrap_token
from kubeforge.plan.etcd.source import UPSTREAM_RELEASES, archive_for
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.up import ClusterState, CniSource, UpContext, plan_up
from kubeforge.plan.up.cni_placement import untolerated
from kubeforge.plan.up.fetch_admin_kubeconfig import LOCAL_NAME
from kubeforge.plan.up.install_etcd import InstallEtcd
from kubeforge.plan.up.install_etcd_tools import InstallEtcdTools
from kubeforge.plan.up.restart_runtimes import RUNTIME_FILES
from kubeforge.render.host import render_cluster
from kubeforge.render.kubeadm import node_view
from kubeforge.workflows.certs import read_apiserver_sans
from kubeforge.workflows.common import (
    file_sha256,
    require_reached,
    site,
)
from kubeforge.workflows.etcd.install import (
    refuse_version_change as refuse_etcd_version_change,
)
from kubeforge.workflows.etcd.sources import prepare_for_members
from kubeforge.workflows.facts import collect_facts
from kubeforge.workflows.preflight_images import check_needed_images
from kubeforge.workflows.version_guard import refuse_version_change

log = logging.getLogger("kubeforge.workflows.up")


@dataclass
class UpResult:
    plan: Plan
    report: Report | None  # None: the operator declined
    preflight: object | None = None  # the PreflightReport (warnings are worth showing)


def cni_source(cluster: Cluster) -> CniSource | None:
    spec = cluster.network.cni
    if not spec.manifest:
        return None
    if spec.manifest.startswith(("https://", "http://")):
        return CniSource(spec.name, url=spec.manifest)
    path = Path(spec.manifest)
    if not path.is_absolute():
        path = cluster.source.parent / path
    try:
        source = CniSource(spec.name, content=path.read_bytes())
    except OSError as exc:
        raise InputError(f"{cluster.source}: network.cni.manifest: cannot read {path}: {exc.strerror}") from None
    refuse_untolerated_cni(cluster, source, path)
    return source


def refuse_untolerated_cni(cluster: Cluster, source: CniSource, path: Path) -> None:
    """A node whose taints the CNI's DaemonSet does not tolerate never gets its network plugin, so it
    never turns Ready: refuse before any host is touched (a URL manifest is not read at planning;
    the Ready gate reports such a node with the kubelet's reason)."""
    hosts = {h.name: h for h in cluster.nodes}
    found = untolerated((source.content or b"").decode(errors="replace"),
                        {n: (h.labels, node_view(cluster, h).taints) for n, h in hosts.items()})
    if not found:
        return
    lines = "; ".join(f"node {u.node}{f' ({hosts[u.node].origin})' if hosts[u.node].origin else ''} NotReady: "
                      f"taint {u.taint} not tolerated by DaemonSet {u.daemonset}" for u in found[:10])
    raise InputError(f"{cluster.source}: network.cni.manifest {path}: the CNI pod cannot run on "
                     f"{len(found)} node(s), so they would never turn Ready: {lines}",
                     hint="add a toleration for the taint to the DaemonSet's pod template (most CNIs tolerate "
                          "every taint: `tolerations: [{operator: Exists}]`), or drop the taint from the inventory")


def files_at(cluster: Cluster, version: KubeVersion | None = None, *, now: datetime | None = None) -> dict:
    """Every host's files as `up` renders them, for the cluster moved to ``version`` (the upgrade
    writes and records them per node, so `up` at the new version finds nothing to do)."""
    if version is not None:
        cluster = replace(cluster, kubernetes_version=version)
    registry = read_registry_access(cluster)
    pki = ensure_pki(cluster)
    secrets = ensure_secrets(cluster, now=now or datetime.now(UTC))
    return render_cluster(cluster, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash,
                          extra_files={h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts},
                          registry_access=registry)


def resolve_context(
    cluster: Cluster,
    facts: Mapping[str, HostFacts],
    state: ClusterState,
    *,
    now: datetime | None = None,
) -> UpContext:
    """Secrets, PKI and every host's files, resolved (and kept locally) before planning."""
    now = now or datetime.now(UTC)
    registry = read_registry_access(cluster)  # a missing password stops us before the PKI is created
    pki = ensure_pki(cluster)
    secrets = ensure_secrets(cluster, now=now)
    expired = secrets.bootstrap_token_expired(now)
    if expired:
        # Joins need a live token; the new one goes into the rendered configs and, on a running
        # cluster, is created there (InitFirstControlPlane) before any join.
        secrets = rotate_bootstrap_token(cluster, now=now)
    files = render_cluster(
        cluster,
        secrets=secrets,
        ca_cert_hash=pki.bundle.kube_ca_cert_hash,
        extra_files={h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts},
        registry_access=registry,
    )
    return UpContext(
        cluster=cluster,
        facts=facts,
        files=files,
        state=state,
        token_to_create=state.initialized and (
            expired or (state.bootstrap_token_ids is not None and secrets.bootstrap_token_id not in state.bootstrap_token_ids)),
        cni=cni_source(cluster),
        local_admin_sha256=file_sha256(cluster.state_dir / LOCAL_NAME),
    )


def with_etcd_install(plan: Plan, cluster: Cluster, pool, member_facts: Mapping[str, EtcdHostFacts | None] | None = None) -> Plan:
    """Hand the external etcd cluster to the etcd workflow's install phases whenever it is not
    converged: they restart a running cluster's changed members one at a time (never all at once)
    and refuse a member whose disk was replaced or a membership that differs from the inventory.
    A converged cluster keeps the thin InstallEtcd no-op and its reason. ``member_facts``: read
    already this run (each member is asked once)."""
    thin = next((p for p in plan.phases if p.name == InstallEtcd.name), None)
    if cluster.etcd.topology is EtcdTopology.STACKED:
        return with_stacked_etcd_tools(plan, cluster, pool)
    if thin is None or thin.is_noop:
        return plan
    try:
        from kubeforge.workflows.etcd.install import plan_install
    except ImportError:  # an older build without the etcd workflow: the thin phase does the job
        return plan
    etcd_plan, _ = plan_install(cluster, pool, member_facts=member_facts)
    phases: list[PhasePlan] = []
    for p in plan.phases:
        phases.extend(etcd_plan.phases if p is thin else (p,))
    return Plan(plan.workflow, tuple(phases))


def with_stacked_etcd_tools(plan: Plan, cluster: Cluster, pool) -> Plan:
    """InstallEtcdTools after InstallPackages, when etcd comes from release archives; their
    archives for the control planes fetched and verified here, before planning."""
    archive = archive_for(cluster)
    if archive is None:
        return plan
    arches = None
    if archive.base != UPSTREAM_RELEASES:
        arches = prepare_for_members(cluster, pool, [cluster.etcd.version], hosts=cluster.control_planes)
    return _after_packages(plan, InstallEtcdTools(arches).plan(cluster))


def _after_packages(plan: Plan, phase: PhasePlan) -> Plan:
    names = [p.name for p in plan.phases]
    at = names.index("InstallPackages") + 1 if "InstallPackages" in names else 0
    return Plan(plan.workflow, (*plan.phases[:at], phase, *plan.phases[at:]))


def refuse_kubernetes_version_change(cluster: Cluster, facts: Mapping[str, HostFacts]) -> None:
    """`up` installs kubeadm, kubelet and kubectl pinned to the inventory's version: on a node that
    has joined and runs another, that would downgrade it or upgrade its kubelet without drain."""
    running = {n: v for n, f in facts.items()
               if f and f.membership.kubelet_conf and (v := f.packages.version_of("kubelet"))}
    refuse_version_change(running, cluster.kubernetes_version, parse_kube, what="Kubernetes",
                          field="spec.kubernetesVersion", source=cluster.source, upgrade="kubeforge upgrade")


def plan_for_up(cluster: Cluster, pool, *, facts: Mapping[str, HostFacts] | None = None,
                journaled: frozenset[str] = frozenset()) -> tuple[Plan, UpContext]:
    """Read-only: facts (unless given), the cluster state, then the plan. ``journaled``: with
    --resume, the steps the resumed run completed (UpContext.journaled)."""
    cni_source(cluster)  # exit 3 before any host is asked
    if facts is None:
        facts = require_reached(collect_facts(cluster, pool))
    refuse_kubernetes_version_change(cluster, facts)
    member_facts = None
    if cluster.etcd.topology is EtcdTopology.EXTERNAL:
        # InstallPackages pins etcd to the inventory's version: never over a member running another
        member_facts = gather_member_facts(cluster, pool)
        refuse_etcd_version_change(cluster, member_facts)
    state = probe_cluster(cluster, pool)
    ctx = resolve_context(cluster, facts, state)
    running = [h for h in cluster.control_planes if (f := facts.get(h.name)) is not None and f.membership.kubelet_conf]
    ctx = replace(ctx, apiserver_sans=read_apiserver_sans(cluster, pool, running))  # for ReissueApiserverCerts
    if cluster.etcd.topology is EtcdTopology.STACKED and any(ctx.half_joined(h) for h in cluster.control_planes):
        ctx = replace(ctx, etcd_members=read_stacked_members(cluster, pool))  # for JoinControlPlanes
    # for ReadyDrainedApiServers, and (journaled) the runtime restarts of a resumed run
    ctx = replace(ctx, drained_backends=read_drained(cluster, pool), journaled=journaled)
    return with_etcd_install(plan_up(ctx), cluster, pool, member_facts), ctx


def state_notes(ctx: UpContext) -> list[str]:
    """What the operator reads before the plan: the nodes that are not Ready, each with its Ready
    condition's message (the kubelet's reason), and the runtime files someone changed on a host since
    kubeforge wrote them (the plan writes them back and restarts containerd)."""
    notes = []
    for h in ctx.cluster.nodes:
        node = ctx.state.nodes.get(h.name)
        if node is not None and not node.ready:
            notes.append(f"[{h.name}] node NotReady: {node.why}")
        for f in ctx.edited(h, ctx.files_where(h, RUNTIME_FILES)):
            notes.append(f"[{h.name}] {f.path} was changed on the host since kubeforge wrote it: "
                         "`up` writes it back and restarts containerd")
    return notes


def read_stacked_members(cluster: Cluster, pool) -> tuple:
    """etcd's members with their health, before planning the removal of one a stopped join added."""
    from kubeforge.workflows.etcd.members import read_listed_members

    return read_listed_members(cluster, pool, "the member a stopped control-plane join added")


# On a host that already is a member (it joined, or runs its etcd member), its ports are held by
# its own components: `up` will not start anything new on them, so a port check there says nothing.
MEMBER_CHECKS = ("ports",)


def is_member(facts: HostFacts | object) -> bool:
    if not isinstance(facts, HostFacts):
        return False
    return facts.membership.kubelet_conf or (facts.membership.etcd_data and facts.units.is_active("etcd"))


def blocking_failures(report, facts) -> list:
    return [r for r in report.failures if not (r.check in MEMBER_CHECKS and is_member(facts.get(r.host)))]


def run_preflight_gate(cluster: Cluster, pool, *, probes: bool = True):
    """Preflight before anything is touched: a failure stops `up` here, naming every problem."""
    from kubeforge.workflows.preflight import preflight, unreachable_hosts

    # members already running are not probed again: a converged fleet's re-run costs no N x N probe
    report, facts = preflight(cluster, pool, probes=probes, now=time.time(), settled=is_member)
    failures = blocking_failures(report, facts)
    for r in report.failures:
        if r not in failures:
            log.info("preflight on a member, not blocking: %s: %s", r.check, r.message, extra={"host": r.host})
    if failures:
        lines = "; ".join(f"[{r.host}] {r.check}: {r.message}" for r in failures[:10])
        raise CheckFailed(f"preflight failed, nothing was changed: {lines}",
                          hint="fix these, or see `kubeforge preflight -i <inventory>` for every check",
                          unreachable=unreachable_hosts(report, failures))
    return report, require_reached(facts)


def up(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    confirm: Callable[[Plan], bool],
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    preflight_probes: bool = True,
    show: Callable[[Plan], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> UpResult:
    """The whole `up`. Raises CheckFailed before touching any host when preflight fails;
    ExecutionFailed / Interrupted (carrying the report) when the run stops part way."""
    # nothing to resume: say so before any facts; what it did brings a node it left drained back (restart_runtimes)
    journaled = completed_steps(cluster.runs_dir, "up", options.resume)
    cni_source(cluster)  # an unreadable or untolerated CNI manifest: exit 3 before any host is asked
    report, facts = run_preflight_gate(cluster, pool, probes=preflight_probes)
    for w in report.warnings:
        log.debug("preflight warning: %s: %s", w.check, w.message, extra={"host": w.host})
        if warn is not None:
            warn(f"preflight warning: [{w.host}] {w.check}: {w.message}")
    check_needed_images(cluster, pool, images_by_host(cluster), warn=warn)  # exit 4 before any change
    plan, ctx = plan_for_up(cluster, pool, facts=facts, journaled=journaled)
    for note in state_notes(ctx):
        log.info("%s", note)
        if warn is not None:
            warn(note)
    run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                  events=events, show=show)
    return UpResult(plan, run.report if run else None, report)
