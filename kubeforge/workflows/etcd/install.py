"""`kubeforge etcd install`: load -> etcd archives verified locally -> member facts -> the cluster's
view -> plan -> confirm -> run.

    plan, inp = plan_install(cluster, pool)
    report = execute_plan(cluster, plan, pool, dry_run=..., confirm=...)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcd import EtcdHostFacts, gather_member_facts
from kubeforge.model import Cluster
from kubeforge.model.versions import parse_etcd
from kubeforge.plan.etcd.install import InstallInput, MemberInput, install_phases
from kubeforge.plan.etcd.source import archive_for
from kubeforge.plan.phase import Plan
from kubeforge.render.packages import KUBERNETES_LIST, PIN_PATH, render_packages
from kubeforge.workflows.etcd.common import (
    context,
    etcd_pki_files,
    member_etcd_files,
    require_external,
)
from kubeforge.workflows.etcd.sources import prepare_for_members
from kubeforge.workflows.etcd.status import gather_status
from kubeforge.workflows.version_guard import (
    refuse_version_change as refuse_running_version_change,
)

WORKFLOW = "etcd install"
log = logging.getLogger("kubeforge.etcd")


def refuse_version_change(cluster: Cluster, facts) -> None:
    """Members holding data run the inventory's etcd version, or nothing is touched."""
    running = {n: f.version for n, f in facts.items() if f and f.has_data and f.version}
    refuse_running_version_change(running, cluster.etcd.version, parse_etcd, what="etcd", field="spec.etcd.version",
                                  source=cluster.source, upgrade="kubeforge etcd upgrade")


def never_formed(member_list, facts) -> bool:
    """A first install that ended (power loss, Ctrl-C) after some members started but before the
    cluster ever formed: no member answers with a member list (no quorum), and no member has the
    applied-config stamp, which is recorded only once the whole cluster was healthy. Its members
    must start together like a new cluster's: one at a time, each gated on a healthy cluster, the
    first one waits for a quorum it can never have alone."""
    return not member_list and not any(f.stamp for f in facts.values() if f)


def plan_install(cluster: Cluster, pool, *, now=None,
                 member_facts: Mapping[str, EtcdHostFacts | None] | None = None) -> tuple[Plan, InstallInput]:
    """``member_facts``: the members' facts when the caller read them already this run (`up`)."""
    from kubeforge.pki import ensure_pki

    require_external(cluster, "install")
    # Release archives are fetched and verified here, before anything on a host changes: a bad
    # checksum stops the run with nothing touched.
    arches = prepare_for_members(cluster, pool, [cluster.etcd.version])
    from_archive = archive_for(cluster) is not None
    bundle = ensure_pki(cluster, now=now).bundle
    facts = dict(member_facts) if member_facts is not None else gather_member_facts(cluster, pool)
    exists = any(f.has_data for f in facts.values() if f)
    refuse_version_change(cluster, facts)
    leader = None
    if exists:
        status = gather_status(cluster, pool)
        leader = status.leader.name if status.leader else None
        listed = {m["name"] or m["peerURLs"][0] for m in status.member_list}
        wanted = {h.name for h in cluster.etcd_members}
        empty = [m["name"] for m in status.member_list
                 if m["name"] in facts and m["clientURLs"] and (mf := facts[m["name"]]) and not mf.has_data]
        if empty:
            raise SafetyRefusal(
                f"{', '.join(empty)}: started before but holding no data now (a re-imaged or replaced disk); "
                "starting it again would corrupt its raft log",
                hint=f"replace it with `kubeforge etcd members -i {cluster.source}` (removed, then added again)",
            )
        if status.member_list and listed != wanted:
            raise SafetyRefusal(
                f"the etcd members ({', '.join(sorted(listed))}) differ from the inventory's "
                f"({', '.join(sorted(wanted))})",
                hint=f"change membership with `kubeforge etcd members -i {cluster.source}` (one member at a time, quorum kept)",
            )
        if never_formed(status.member_list, facts):
            log.warning("etcd members hold data but no member answers with a member list, and none ever recorded an "
                        "applied configuration: a first install cut short before the cluster formed; every member "
                        "starts together, as in a first install")
            exists = False
    ctx = context(cluster)
    members = []
    for host in cluster.etcd_members:
        f = facts[host.name]
        assert f is not None  # gather_member_facts raises for an unreachable member unless allow_unreachable
        files = etcd_pki_files(cluster, bundle, host) + member_etcd_files(ctx, host, f)
        # Only the sources etcd comes from; Kubernetes' repository and pin are `up`'s business.
        sources = () if from_archive else tuple(
            p for p in render_packages(ctx, host) if p.path not in (KUBERNETES_LIST, PIN_PATH))
        members.append(MemberInput(host, sources, tuple(files), f, arch=arches[host.name]))
    inp = InstallInput(cluster, tuple(members), cluster_exists=exists, leader=leader)
    return Plan(WORKFLOW, tuple(install_phases(inp))), inp
