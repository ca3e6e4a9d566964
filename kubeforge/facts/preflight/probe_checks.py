"""Checks over probe results: etcd disk fsync latency and host-to-host connectivity. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from kubeforge.facts.preflight.probes import ProbeResults
from kubeforge.facts.preflight.report import CheckResult, failed, passed, warned
from kubeforge.facts.preflight.requirements import FSYNC_WARN_MS
from kubeforge.model import Host


def check_fsync(host: Host, probes: ProbeResults) -> Iterator[CheckResult]:
    result = probes.fsync.get(host.name)
    if result is None:
        return
    if result.problem:
        yield warned(host.name, "etcd-fsync", f"could not measure disk latency: {result.problem}")
    elif result.p99_ms is not None and result.p99_ms > FSYNC_WARN_MS:
        yield warned(
            host.name,
            "etcd-fsync",
            f"fdatasync p99 {result.p99_ms:.1f} ms on {result.directory} (etcd wants under {FSYNC_WARN_MS:g} ms; "
            "slow disks cause leader elections)",
        )
    else:
        yield passed(host.name, "etcd-fsync", f"fdatasync p99 {result.p99_ms:.1f} ms on {result.directory}")


def check_connectivity(host: Host, probes: ProbeResults, ssh_ports: Mapping[str, int] | None = None) -> Iterator[CheckResult]:
    """Role ports a peer cannot reach fail. SSH between hosts only warns: kubeforge itself never
    needs it (it connects from the operator's machine); it is probed as the one port open on every
    host before anything is installed, so it tells routing and firewall trouble apart early."""
    result = probes.connectivity.get(host.name)
    if result is None:
        return
    if result.problem:
        yield warned(host.name, "connectivity", f"could not probe connectivity: {result.problem}")
        return
    notes = []
    listening = probes.listening.get(host.name)
    if listening is not None and listening.problem:
        notes.append(f"peers could not test its role ports: {listening.problem}")
    elif listening is not None and listening.errors:
        notes.append("untestable ports here: " + ", ".join(f"{p} ({e})" for p, e in sorted(listening.errors.items())))
    ssh_ports = ssh_ports or {}
    bad: dict[str, list[str]] = defaultdict(list)
    ssh_bad: dict[str, list[str]] = defaultdict(list)
    for c in result.connections:
        if not c.ok:
            (ssh_bad if ssh_ports.get(c.target) == c.port else bad)[c.target].append(f"{c.port} ({c.error})")
    if ssh_bad:
        notes.insert(0, "cannot connect to SSH of " + "; ".join(f"{t} {', '.join(ps)}" for t, ps in sorted(ssh_bad.items())))
    if bad:
        shown = "; ".join(f"{t} {', '.join(ps)}" for t, ps in sorted(bad.items()))
        yield failed(host.name, "connectivity", f"cannot connect to {shown}" + (f"; {'; '.join(notes)}" if notes else ""))
    elif notes:
        yield warned(host.name, "connectivity", "; ".join(notes))
    else:
        peers = len({c.target for c in result.connections})
        yield passed(host.name, "connectivity", f"reaches {peers} peer(s) on SSH and role ports")
