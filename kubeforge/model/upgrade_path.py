"""Upgrade paths and version-skew rules for Kubernetes and etcd.

Kubernetes (kubeadm): a control plane moves one minor at a time; patch upgrades inside a minor are a
single hop; an intermediate minor is crossed at its latest known patch. Skew (Kubernetes version skew
policy): API servers within one minor of each other; a kubelet never newer than the oldest API server
and at most three minors older than it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from kubeforge.errors import SafetyRefusal
from kubeforge.model.versions import (
    ETCD_MINOR_EXIT_FLOORS,
    SUPPORTED_ETCD_MINORS,
    SUPPORTED_MINORS,
    EtcdVersion,
    KubeVersion,
    Version,
    latest_patch,
    supported_kube_minors,
)

KUBELET_MAX_MINORS_BEHIND = 3
CONTROL_PLANE_MAX_MINOR_SPREAD = 1


def _plain(v: Version | str) -> Version:
    # Version's dataclass equality also compares the class (KubeVersion(1,34,2) != Version(1,34,2)),
    # so inputs are reduced to plain Versions before any comparison.
    v = Version.parse(v)
    return Version(v.major, v.minor, v.patch)


def _kube(v: Version) -> KubeVersion:
    return KubeVersion(v.major, v.minor, v.patch)


def _etcd(v: Version) -> EtcdVersion:
    return EtcdVersion(v.major, v.minor, v.patch)


def _refuse_non_upgrade(current: Version, target: Version, what: str) -> None:
    if target == current:
        raise SafetyRefusal(f"{what} is already at {current}; nothing to upgrade")
    if target < current:
        raise SafetyRefusal(
            f"{current} -> {target} is a downgrade; kubeforge only upgrades {what}",
            hint="restore an etcd snapshot taken before the upgrade to go back",
        )
    if target.major != current.major:
        raise SafetyRefusal(f"{current} -> {target} changes the major version; that is not an upgrade kubeforge knows")


def upgrade_path(current: Version, target: Version, *, multi_hop: bool = False) -> list[KubeVersion]:
    """The versions to upgrade through, in order, ending at ``target``; raises SafetyRefusal."""
    current, target = _plain(current), _plain(target)
    _refuse_non_upgrade(current, target, "Kubernetes")
    supported = ", ".join(supported_kube_minors())
    for v, role in ((current, "current"), (target, "target")):
        if v.minor_key not in SUPPORTED_MINORS:
            raise SafetyRefusal(f"{role} version {v} is not in a supported minor (supported: {supported})")
    hops = [latest_patch((current.major, m)) for m in range(current.minor + 1, target.minor)]
    path = [*hops, _kube(target)]
    if len(path) > 1 and not multi_hop:
        arrow = " -> ".join(str(v) for v in path)
        raise SafetyRefusal(
            f"{current} -> {target} skips minors; with --multi-hop the path is {arrow}",
            hint="kubeadm upgrades one minor at a time",
        )
    return path


def check_skew(
    control_plane_versions: Mapping[str, Version], kubelet_versions: Mapping[str, Version]
) -> list[str]:
    """Violations of the version-skew policy, one sentence each naming the hosts; empty when fine."""
    out: list[str] = []
    if not control_plane_versions:
        return out
    cps = {h: _plain(v) for h, v in control_plane_versions.items()}
    oldest_host = min(cps, key=lambda h: (cps[h], h))
    newest_host = max(cps, key=lambda h: (cps[h], h))
    oldest, newest = cps[oldest_host], cps[newest_host]
    if newest.minor - oldest.minor > CONTROL_PLANE_MAX_MINOR_SPREAD or newest.major != oldest.major:
        out.append(
            f"control planes more than one minor apart: {newest_host} runs {newest}, {oldest_host} runs {oldest}"
        )
    for host in sorted(kubelet_versions):
        kv = _plain(kubelet_versions[host])
        if kv.minor_key > oldest.minor_key:
            out.append(
                f"kubelet on {host} ({kv}) is newer than the oldest API server ({oldest_host} {oldest})"
            )
        elif kv.major != oldest.major or oldest.minor - kv.minor > KUBELET_MAX_MINORS_BEHIND:
            out.append(
                f"kubelet on {host} ({kv}) is more than {KUBELET_MAX_MINORS_BEHIND} minors older than the "
                f"oldest API server ({oldest_host} {oldest})"
            )
    return out


def check_upgrade_skew(
    control_plane_versions: Mapping[str, Version],
    kubelet_versions: Mapping[str, Version],
    *,
    control_planes_to: Mapping[str, Version] | None = None,
    kubelets_to: Mapping[str, Version] | None = None,
) -> None:
    """Refuse (SafetyRefusal) a step that would break the skew rules: the cluster as it is, with
    ``control_planes_to`` / ``kubelets_to`` applied, must not have violations it does not have now.
    Violations that already exist are not blamed on the step (the step may be what repairs them)."""
    before = set(check_skew(control_plane_versions, kubelet_versions))
    cps = {**control_plane_versions, **(control_planes_to or {})}
    kubelets = {**kubelet_versions, **(kubelets_to or {})}
    new = [v for v in check_skew(cps, kubelets) if v not in before]
    if new:
        changes = [f"{h} API server -> {v}" for h, v in sorted((control_planes_to or {}).items())]
        changes += [f"{h} kubelet -> {v}" for h, v in sorted((kubelets_to or {}).items())]
        raise SafetyRefusal(
            f"{', '.join(changes)} would break the version-skew policy: " + "; ".join(new),
            hint="upgrade control planes before kubelets, one minor at a time",
        )


@dataclass(frozen=True)
class EtcdHop:
    """One version an etcd upgrade rolls every member to, and why the path passes through it."""

    version: EtcdVersion
    why: str  # "the latest 3.4 patch, which etcd's upgrade policy requires before 3.5"
    kind: str  # "target", "latest-patch" (advice), "floor" (hard), "minor" (crossing a minor)

    def __str__(self) -> str:
        return str(self.version)


def etcd_upgrade_hops(current: Version, target: Version, *, allow_older_patch: bool = False) -> list[EtcdHop]:
    """etcd versions to roll through, one minor at a time, each with the reason it is on the path.

    Rules, from etcd's upgrade policy (etcd.io/docs/v3.6/upgrades/): only patch upgrades and
    single-minor upgrades are supported; "update to the most recent patch version before upgrading
    to the next minor" (the first hop, when the members are not on SUPPORTED_ETCD_MINORS' latest
    patch); every minor crossed is crossed at its latest patch; and leaving 3.5 for 3.6 needs 3.5.20
    or later (ETCD_MINOR_EXIT_FLOORS), a hard floor. ``allow_older_patch`` drops the
    latest-patch-first hop, which many air-gapped mirrors cannot offer, but never a floor and never
    a minor.
    """
    current, target = _plain(current), _plain(target)
    _refuse_non_upgrade(current, target, "etcd")
    supported = ", ".join(f"{a}.{b}" for a, b in sorted(SUPPORTED_ETCD_MINORS))
    for v, role in ((current, "current"), (target, "target")):
        if v.minor_key not in SUPPORTED_ETCD_MINORS:
            raise SafetyRefusal(f"{role} etcd version {v} is not in a supported minor (supported: {supported})")
    target_hop = EtcdHop(_etcd(target), "the version asked for", "target")
    if current.minor_key == target.minor_key:
        return [target_hop]
    path: list[EtcdHop] = []
    latest = SUPPORTED_ETCD_MINORS[current.minor_key]
    floor = ETCD_MINOR_EXIT_FLOORS.get(current.minor_key)
    next_minor = f"{current.major}.{current.minor + 1}"
    if floor is not None and current.patch < floor:
        path.append(EtcdHop(
            EtcdVersion(current.major, current.minor, latest),
            f"the latest {current.minor_str} patch: etcd requires at least {current.minor_str}.{floor} before "
            f"{next_minor} (a hard floor, kept with --allow-older-patch)", "floor"))
    elif current.patch < latest and not allow_older_patch:
        path.append(EtcdHop(
            EtcdVersion(current.major, current.minor, latest),
            f"the latest {current.minor_str} patch, which etcd's upgrade policy requires before {next_minor}",
            "latest-patch"))
    for m in range(current.minor + 1, target.minor):
        v = EtcdVersion(current.major, m, SUPPORTED_ETCD_MINORS[(current.major, m)])
        path.append(EtcdHop(v, f"{current.major}.{m} at its latest patch: etcd upgrades one minor at a time", "minor"))
    path.append(target_hop)
    return path


def etcd_upgrade_path(current: Version, target: Version, *, allow_older_patch: bool = False) -> list[EtcdVersion]:
    """The versions of ``etcd_upgrade_hops``, in order, ending at ``target``; raises SafetyRefusal."""
    return [h.version for h in etcd_upgrade_hops(current, target, allow_older_patch=allow_older_patch)]


def dropped_patch_hop(current: Version, target: Version) -> EtcdVersion | None:
    """The latest-patch-first hop ``--allow-older-patch`` leaves out of this upgrade, if any."""
    full = etcd_upgrade_hops(current, target)
    return next((h.version for h in full if h.kind == "latest-patch"), None)
