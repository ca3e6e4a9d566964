"""Checks across hosts: unique hostnames, product_uuids and MACs, clock skew, one OS family.

Every duplicate is reported on each host involved, naming the other(s), so the table row of either
host says what to fix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from kubeforge.facts.preflight.report import CheckResult, failed, passed, warned
from kubeforge.facts.types import HostFacts

DEFAULT_MAX_SKEW_S = 2.0


def _others(names: list[str], me: str) -> str:
    return ", ".join(n for n in names if n != me)


def check_unique_hostnames(facts: Mapping[str, HostFacts]) -> Iterator[CheckResult]:
    owners: dict[str, list[str]] = defaultdict(list)
    for name, f in facts.items():
        if f.hostname:
            owners[f.hostname.lower()].append(name)
    for name, f in facts.items():
        if not f.hostname:
            yield warned(name, "hostname", "cannot read the hostname")
            continue
        same = owners[f.hostname.lower()]
        if len(same) > 1:
            yield failed(name, "hostname", f"hostname {f.hostname!r} is also the hostname of {_others(same, name)}")
        else:
            yield passed(name, "hostname", f"{f.hostname} (unique)")


def check_unique_product_uuids(facts: Mapping[str, HostFacts]) -> Iterator[CheckResult]:
    owners: dict[str, list[str]] = defaultdict(list)
    for name, f in facts.items():
        if f.product_uuid:
            owners[f.product_uuid].append(name)
    for name, f in facts.items():
        if not f.product_uuid:
            yield warned(name, "product-uuid", "cannot read /sys/class/dmi/id/product_uuid (no DMI, or not root)")
            continue
        same = owners[f.product_uuid]
        if len(same) > 1:
            yield failed(
                name,
                "product-uuid",
                f"product_uuid {f.product_uuid} is the same on {_others(same, name)} (cloned machine?); "
                "kubeadm needs it unique per node",
            )
        else:
            yield passed(name, "product-uuid", "unique")


def check_unique_macs(facts: Mapping[str, HostFacts]) -> Iterator[CheckResult]:
    owners: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, f in facts.items():
        for iface, mac in f.macs.interfaces.items():
            owners[mac].append((name, iface))
    for name, f in facts.items():
        if not f.macs.interfaces:
            yield warned(name, "mac", f"no MAC address found: {f.macs.problem or 'no network interface besides lo'}")
            continue
        clashes = []
        for iface, mac in sorted(f.macs.interfaces.items()):
            other = [f"{h} ({i})" for h, i in owners[mac] if h != name]
            if other:
                clashes.append(f"{iface} {mac} is also on {', '.join(other)}")
        if clashes:
            yield failed(name, "mac", "; ".join(clashes))
        else:
            yield passed(name, "mac", "unique")


def check_clock_skew(facts: Mapping[str, HostFacts], max_skew_s: float = DEFAULT_MAX_SKEW_S) -> Iterator[CheckResult]:
    """Each host's offset against the operator is known to lie in an interval (the sample was taken
    between two local readings). The skew between two hosts is at least the gap between their
    intervals; only a gap above the limit fails, so network latency never passes for skew."""
    intervals = {n: f.time.offset_interval for n, f in facts.items()}
    known = {n: iv for n, iv in intervals.items() if iv is not None}
    for name, iv in intervals.items():
        if iv is None:
            yield warned(name, "clock-skew", f"cannot read the clock: {facts[name].time.problem}")
            continue
        worst, worst_peer = 0.0, None
        for peer, piv in known.items():
            if peer == name:
                continue
            gap = max(iv[0] - piv[1], piv[0] - iv[1], 0.0)
            if gap > worst:
                worst, worst_peer = gap, peer
        if worst > max_skew_s and worst_peer is not None:
            ahead = "ahead of" if iv[0] > known[worst_peer][0] else "behind"
            yield failed(
                name,
                "clock-skew",
                f"clock is at least {worst:.1f} s {ahead} {worst_peer} (limit {max_skew_s:g} s); "
                "run NTP (chrony or systemd-timesyncd) on every host",
            )
        else:
            yield passed(name, "clock-skew", f"within {max_skew_s:g} s of every other host")


def check_os_consistency(facts: Mapping[str, HostFacts]) -> Iterator[CheckResult]:
    families: dict[str, list[str]] = defaultdict(list)
    releases: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, f in facts.items():
        if f.os.family:
            families[f.os.family].append(name)
            releases[(f.os.id or "?", f.os.version_id or "?")].append(name)
    if not families:
        return
    majority_family = max(families, key=lambda k: len(families[k]))
    majority_release = max(releases, key=lambda k: len(releases[k]))
    for name, f in facts.items():
        if not f.os.family:
            continue
        if len(families) > 1:
            shown = "; ".join(f"{fam}: {', '.join(hs)}" for fam, hs in sorted(families.items()))
            yield failed(name, "os-consistency", f"hosts run different OS families ({shown})")
        elif (f.os.id, f.os.version_id) != majority_release and len(releases) > 1:
            yield warned(
                name,
                "os-consistency",
                f"{f.os.id} {f.os.version_id} differs from the {majority_release[0]} {majority_release[1]} "
                f"of {', '.join(releases[majority_release])}",
            )
        else:
            yield passed(name, "os-consistency", f"same {majority_family} release as the other hosts")
