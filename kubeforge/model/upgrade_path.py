"""Upgrade paths and version-skew rules for Kubernetes and etcd, from the facts of versions.yaml.

Kubernetes (kubeadm): a control plane moves one minor at a time; patch upgrades inside a minor are a
single hop; an intermediate minor is crossed at the latest patch the package source offers (read at
plan time, never a table). Skew (Kubernetes version skew policy): API servers within one minor of
each other; a kubelet never newer than the oldest API server and at most three minors older than it.

etcd: one minor per upgrade; leaving a minor needs its exit floor (3.5.32+ before 3.6, 3.6.11+
before 3.7: a refusal naming the patch upgrade to run first, never lowered by --allow-older-patch);
the latest released patch of the current minor first (advice that --allow-older-patch drops).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubeforge.errors import SafetyRefusal
from kubeforge.model.versions import (
    EtcdVersion,
    KubeVersion,
    Version,
    etcd_minor,
    etcd_rule_source,
    known_etcd_minors,
    known_kube_minors,
    kube_minor,
    skew,
    skew_source,
)

KUBELET_MAX_MINORS_BEHIND = skew("kubeletMaxMinorsBehind")
CONTROL_PLANE_MAX_MINOR_SPREAD = skew("apiServersMaxMinorSpread")


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


def hop_minors(current: Version, target: Version) -> list[KubeVersion]:
    """One version per minor an upgrade from ``current`` to ``target`` enters (patch 0 stands for
    the minor): the minors whose package sources must be read before the path can be chosen.
    Refuses (SafetyRefusal) a downgrade or a minor versions.yaml does not know."""
    current, target = _plain(current), _plain(target)
    _refuse_non_upgrade(current, target, "Kubernetes")
    known = ", ".join(known_kube_minors())
    for v, role in ((current, "current"), (target, "target")):
        if kube_minor(v) is None:
            raise SafetyRefusal(
                f"{role} version {v}: Kubernetes {v.minor_str} is not a minor kubeforge knows (known: {known}; "
                f"source: kubeforge/model/versions.yaml)",
                hint="`kubeforge version -o json` lists the known minors and their sources; choose a version in one "
                     "(a newer kubeforge knows newer minors); nothing was changed",
            )
    return [KubeVersion(current.major, m, 0) for m in range(current.minor + 1, target.minor + 1)]


def latest_offered(offered: Iterable[Version], minor: tuple[int, int]) -> KubeVersion | None:
    """The newest version of ``minor`` among ``offered`` (what the package source has)."""
    best = max((_plain(v) for v in offered if v.minor_key == minor), default=None)
    return _kube(best) if best is not None else None


def upgrade_path(current: Version, target: Version, *, multi_hop: bool = False,
                 offered: Iterable[Version] | None = None, source: str = "the package source") -> list[KubeVersion]:
    """The versions to upgrade through, in order, ending at ``target``; raises SafetyRefusal.

    Each intermediate minor is crossed at the newest patch ``offered`` (what ``source`` offers)."""
    current, target = _plain(current), _plain(target)
    minors = hop_minors(current, target)
    offered = tuple(offered) if offered is not None else None
    hops = []
    for m in minors[:-1]:
        if offered is None:
            raise SafetyRefusal(f"the latest Kubernetes {m.minor_str} patch comes from the package source, "
                                "which was not read", hint="this is a bug: report it")
        best = latest_offered(offered, m.minor_key)
        if best is None:
            raise SafetyRefusal(
                f"{current} -> {target} passes through Kubernetes {m.minor_str}, and {source} offers no "
                f"{m.minor_str} kubeadm (kubeadm upgrades one minor at a time)",
                hint=f"add Kubernetes {m.minor_str} packages to the package source; nothing was changed",
            )
        hops.append(best)
    path = [*hops, _kube(target)]
    if len(path) > 1 and not multi_hop:
        arrow = " -> ".join(str(v) for v in path)
        raise SafetyRefusal(
            f"{current} -> {target} skips minors; with --multi-hop the path is {arrow}",
            hint=f"kubeadm upgrades one minor at a time ({skew_source().split(';')[0]}); run again with --multi-hop",
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
    kind: str  # "target" or "latest-patch" (advice --allow-older-patch drops)

    def __str__(self) -> str:
        return str(self.version)


def _etcd_command(version: Version | str) -> str:
    return f"kubeforge etcd upgrade -i <inventory> --to {version}"


def etcd_upgrade_hops(current: Version, target: Version, *, allow_older_patch: bool = False) -> list[EtcdHop]:
    """etcd versions to roll through, each with the reason it is on the path (versions.yaml's rules).

    One minor per upgrade ("upgrades that skip a minor are not supported and will likely fail";
    3.4 data is refused by 3.6 outright): a larger jump is refused naming the upgrade to run first.
    Leaving a minor needs every member on its exit floor or later (3.5.32 before 3.6, 3.6.11 before
    3.7): below it the upgrade is refused, naming the patch upgrade to run first — a hard rule that
    ``allow_older_patch`` never lowers. At or above the floor, the path goes through the minor's
    latest release first ("update to the most recent patch version before upgrading to the next
    minor"), advice that ``allow_older_patch`` drops for mirrors that never carried it.
    """
    current, target = _plain(current), _plain(target)
    _refuse_non_upgrade(current, target, "etcd")
    known = ", ".join(known_etcd_minors())
    for v, role in ((current, "current"), (target, "target")):
        if etcd_minor(v) is None:
            raise SafetyRefusal(f"{role} etcd version {v} is not in a minor kubeforge knows (known: {known}; "
                                "source: kubeforge/model/versions.yaml)")
    target_hop = EtcdHop(_etcd(target), "the version asked for", "target")
    if current.minor_key == target.minor_key:
        return [target_hop]
    here = etcd_minor(current)
    assert here is not None
    next_minor = f"{current.major}.{current.minor + 1}"
    if target.minor - current.minor > 1:
        nxt = etcd_minor((current.major, current.minor + 1))
        step = nxt.latest_release if nxt else next_minor
        raise SafetyRefusal(
            f"etcd {current} -> {target} skips etcd {next_minor}: etcd upgrades one minor at a time"
            + (f" and {target.minor_str} refuses {current.minor_str} data" if (current.minor, target.minor) == (4, 6) else "")
            + f" (source: {etcd_rule_source('noDirect34To36' if (current.minor, target.minor) == (4, 6) else 'oneMinorPerUpgrade')})",
            hint=f"upgrade to {next_minor} first: `{_etcd_command(step)}`, then to {target}; nothing was changed",
        )
    floor, latest = here.exit_floor, here.latest_release
    if floor is not None and current < floor:
        raise SafetyRefusal(
            f"etcd {current} -> {target} is refused: every {current.minor_str} member must run {floor} or later "
            f"before {next_minor} (source: {here.source('exitFloor')}); --allow-older-patch does not lower this",
            hint=f"upgrade the patch first: `{_etcd_command(latest)}`, then `{_etcd_command(target)}`; nothing was changed",
        )
    path: list[EtcdHop] = []
    if current < latest and not allow_older_patch:
        path.append(EtcdHop(
            _etcd(latest),
            f"the latest {current.minor_str} patch, which etcd's upgrade policy requires before {next_minor} "
            f"({here.source('latestRelease')})", "latest-patch"))
    path.append(target_hop)
    return path


def needs_v2store_check(current: Version, target: Version) -> bool:
    """Whether leaving ``current``'s minor for ``target`` needs `etcdutl check v2store` first."""
    here = etcd_minor(current)
    return bool(here and here.v2store_check_before_exit and target.minor_key > current.minor_key)


def etcd_step_to(current: Version, minimum: Version) -> EtcdVersion:
    """The etcd upgrade to suggest to bring ``current`` to ``minimum`` or later: the latest release of
    its own minor when that is enough (a patch upgrade), else ``minimum``."""
    here = etcd_minor(current)
    if here is not None and here.latest_release >= minimum:
        return here.latest_release
    return _etcd(minimum)


def etcd_for_kubernetes(kube: Version, etcd_versions: Mapping[str, Version]) -> None:
    """Refuse (SafetyRefusal) a Kubernetes version whose kubeadm needs a newer external etcd than the
    members run (versions.yaml's minExternalEtcd), naming the etcd upgrade to run first."""
    m = kube_minor(kube)
    if m is None or m.min_external_etcd is None or not etcd_versions:
        return
    low = {h: _plain(v) for h, v in etcd_versions.items() if _plain(v) < m.min_external_etcd}
    if not low:
        return
    who = ", ".join(f"{h} {v}" for h, v in sorted(low.items()))
    to = etcd_step_to(min(low.values()), m.min_external_etcd)
    raise SafetyRefusal(
        f"Kubernetes {kube} needs external etcd {m.min_external_etcd} or later, and members run {who} "
        f"(kubeadm {m.name} MinExternalEtcdVersion; source: {m.source('minExternalEtcd')})",
        hint=f"upgrade etcd first: `{_etcd_command(to)}`; nothing was changed",
    )


def etcd_upgrade_path(current: Version, target: Version, *, allow_older_patch: bool = False) -> list[EtcdVersion]:
    """The versions of ``etcd_upgrade_hops``, in order, ending at ``target``; raises SafetyRefusal."""
    return [h.version for h in etcd_upgrade_hops(current, target, allow_older_patch=allow_older_patch)]


def dropped_patch_hop(current: Version, target: Version) -> EtcdVersion | None:
    """The latest-patch-first hop ``--allow-older-patch`` leaves out of this upgrade, if any."""
    full = etcd_upgrade_hops(current, target)
    return next((h.version for h in full if h.kind == "latest-patch"), None)
