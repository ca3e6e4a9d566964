"""CheckUpgradeSafety: everything that refuses an upgrade before anything is touched.

Refusals (SafetyRefusal, exit 7), each naming the hosts and versions involved: a host that gave no
facts; a node the API does not know or reports NotReady; the API not answering; an unhealthy etcd
member; a downgrade; a skipped minor without --multi-hop (the message names the hops); a step that
would break the version-skew policy; a hop version the package source does not offer; an external etcd older than the target minor's
kubeadm accepts (naming the `kubeforge etcd upgrade` to run first).
"""

from __future__ import annotations

from kubeforge.errors import SafetyRefusal
from kubeforge.model import Cluster
from kubeforge.model.upgrade_path import check_upgrade_skew, etcd_for_kubernetes, hop_minors, upgrade_path
from kubeforge.model.versions import KubeVersion, Version
from kubeforge.plan.upgrade.state import COMPONENTS, UpgradeFacts


def _versions(cluster: Cluster, facts: UpgradeFacts) -> list[tuple[str, str, Version]]:
    """(host, what, version) for every version running or installed on a node."""
    out: list[tuple[str, str, Version]] = []
    for host in cluster.nodes:
        m = facts.machines.get(host.name)
        if m is None:
            continue
        if host.is_control_plane and m.apiserver is not None:
            out.append((host.name, "API server", m.apiserver))
        kubelet = facts.kubelet(host.name)
        if kubelet is not None:
            out.append((host.name, "kubelet", kubelet))
        for c in COMPONENTS:
            if c in m.packages:
                out.append((host.name, c, m.packages[c]))
    return out


def _refuse_unhealthy(cluster: Cluster, facts: UpgradeFacts) -> None:
    if facts.unreachable:
        gone = "; ".join(f"{h}: {why}" for h, why in facts.unreachable.items())
        raise SafetyRefusal(f"cannot upgrade while hosts give no facts: {gone}",
                            hint="bring them back (or fix SSH) and run again; nothing was changed",
                            unreachable=tuple(facts.unreachable))
    if facts.api_problem:
        raise SafetyRefusal(f"cannot read the cluster's nodes from {cluster.first_control_plane.name}: {facts.api_problem}",
                            hint="is the cluster up? `kubeforge up` first; nothing was changed")
    missing_manifest = [h.name for h in cluster.control_planes if facts.machines[h.name].apiserver is None]
    if missing_manifest:
        raise SafetyRefusal(f"no API server manifest on {', '.join(missing_manifest)}: not a running control plane",
                            hint="run `kubeforge up` to join it first; nothing was changed")
    unknown = [h.name for h in cluster.nodes if h.name not in facts.nodes]
    if unknown:
        raise SafetyRefusal(f"not nodes of the cluster yet: {', '.join(unknown)}",
                            hint="run `kubeforge up` to join them before upgrading; nothing was changed")
    not_ready = [h.name for h in cluster.nodes if not facts.nodes[h.name].ready]
    if not_ready:
        raise SafetyRefusal(f"the cluster is not healthy: node{'s' if len(not_ready) > 1 else ''} {', '.join(not_ready)} NotReady",
                            hint="an upgrade drains nodes; start from a healthy cluster. Nothing was changed")
    if facts.etcd_problems:
        raise SafetyRefusal("the cluster is not healthy: etcd " + "; ".join(facts.etcd_problems),
                            hint="`kubeforge etcd status` shows the members; nothing was changed")


def _current(cluster: Cluster, facts: UpgradeFacts, target: KubeVersion) -> Version | None:
    """The oldest version anywhere (None when every node runs ``target``); refuses an unhealthy
    cluster and a downgrade."""
    _refuse_unhealthy(cluster, facts)
    seen = _versions(cluster, facts)
    newer = [(h, what, v) for h, what, v in seen if v > target]
    if newer:
        h, what, v = max(newer, key=lambda x: x[2])
        raise SafetyRefusal(f"{h} runs {what} {v}: {v} -> {target} is a downgrade; kubeforge only upgrades",
                            hint="restore an etcd snapshot taken before the upgrade to go back")
    current = min((v for _, _, v in seen), default=None)
    if current is None:
        raise SafetyRefusal("no Kubernetes version found on any node", hint="run `kubeforge up` first")
    return None if current == target else current


def minors_to_read(cluster: Cluster, facts: UpgradeFacts, target: KubeVersion) -> list[KubeVersion]:
    """The minors (patch 0 stands for each) whose package source must be read before the path can
    be chosen: every minor the upgrade enters. Refuses what check_upgrade_safety refuses first."""
    current = _current(cluster, facts, target)
    return [] if current is None else hop_minors(current, target)


def check_upgrade_safety(cluster: Cluster, facts: UpgradeFacts, target: KubeVersion, *, multi_hop: bool) -> list[KubeVersion]:
    """The hops still to make, in order (empty when every node already runs ``target``), or a
    SafetyRefusal saying why not. Intermediate minors are crossed at the newest patch
    ``facts.offered`` holds (what the package source offers)."""
    current = _current(cluster, facts, target)
    if current is None:
        return []
    # Patch level first: the oldest version anywhere decides the path, so a half-finished earlier
    # upgrade is completed hop by hop rather than skipped over.
    path = upgrade_path(current, target, multi_hop=multi_hop, offered=facts.offered, source=facts.offered_from)
    # A minor whose kubeadm needs a newer external etcd than the members run: the etcd upgrade first.
    etcd_for_kubernetes(target, {m: Version.parse(v.split("+")[0]) for m, v in facts.etcd_versions.items()})
    first = path[0]
    cps = {h.name: facts.machines[h.name].apiserver for h in cluster.control_planes}
    kubelets = {h.name: v for h in cluster.nodes if (v := facts.kubelet(h.name)) is not None}
    # The hop moves every API server below it; the path starts at the oldest version anywhere, so
    # this only refuses a cluster that was already outside the policy in a way the hop makes worse.
    check_upgrade_skew(cps, kubelets, control_planes_to={h: first for h, v in cps.items() if v is not None and v < first})  # type: ignore[arg-type]
    if facts.offered is not None:
        missing = [v for v in path if v not in facts.offered]
        if missing:
            offered = ", ".join(str(v) for v in sorted(facts.offered)) or "nothing"
            raise SafetyRefusal(
                f"{facts.offered_from} does not offer kubeadm {', '.join(str(v) for v in missing)} "
                f"(it offers: {offered})",
                hint="add those versions to the mirror or bundle, or choose a version it has; nothing was changed",
            )
    return path
