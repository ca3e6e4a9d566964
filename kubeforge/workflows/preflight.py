"""Preflight: facts -> probes -> checks -> report. Nothing on a host is changed, except the two
documented probes (a temporary fsync file under the etcd data dir's filesystem on etcd hosts, and
short-lived listeners on role ports; see kubeforge.facts.preflight.probes).

    report = run_preflight(cluster, facts, now=time.time())            # pure, for tests and `up`
    report = preflight(cluster, pool, now=time.time())                 # gathers and probes first

Decisions:
- sysctls (bridge-nf-call-iptables, ip_forward) and loadable-but-unloaded modules are warnings on a
  host kubeforge has not prepared yet: `up` sets them in its prepare phase, before anything needs
  them. On a host kubeforge already prepared for this cluster (its applied.json names the cluster),
  a wrong sysctl is drift and fails. Standalone `kubeforge preflight` reports them the same way.
- A required port that is held fails, unless kubeforge's own service holds it on a host kubeforge
  prepared for this cluster (etcd on 2379/2380 of an etcd member, the kubelet on 10250...).
- A host that cannot be reached fails the "reachable" check; every other host is still checked.
- Connectivity follows roles (nodes and balancers -> API server, control planes -> kubelets and
  etcd clients, etcd members -> each other's peer port), tested by listen-then-connect while the
  ports are still free. A role flow that fails is a failure; SSH between hosts, which kubeforge does
  not need, only warns.
- Swap on a node fails: the kubelet will not run with it, and taking memory away from a machine
  that was given swap is the operator's decision (PrepareHosts in `up` also turns swap off and keeps
  it off, as a second line, on hosts that passed).
- Clock skew compares each host's offset interval (the remote clock read between two local
  readings), so a slow link widens the uncertainty and never passes for skew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from kubeforge.facts import FactsError, HostFacts, gather_facts
from kubeforge.facts.gather import TransportSource
from kubeforge.facts.preflight import ProbeResults, make_report
from kubeforge.facts.preflight.fleet_checks import (
    DEFAULT_MAX_SKEW_S,
    check_clock_skew,
    check_os_consistency,
    check_unique_hostnames,
    check_unique_macs,
    check_unique_product_uuids,
)
from kubeforge.facts.preflight.host_checks import HOST_CHECKS
from kubeforge.facts.preflight.probe_checks import check_connectivity, check_fsync
from kubeforge.facts.preflight.report import CheckResult, PreflightReport, failed, passed
from kubeforge.facts.preflight.run_probes import run_connectivity_probe, run_fsync_probes
from kubeforge.model import Cluster, Host


def run_preflight(
    cluster: Cluster,
    facts: Mapping[str, HostFacts | FactsError],
    *,
    now: float,
    probes: ProbeResults | None = None,
    max_clock_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> PreflightReport:
    """Every check on every host in ``facts`` (inventory order). Pure: no I/O, no clock."""
    probes = probes or ProbeResults()
    hosts = [h for h in cluster.hosts if h.name in facts]
    reached: dict[str, HostFacts] = {}
    results: list[CheckResult] = []
    for host in hosts:
        f = facts[host.name]
        if isinstance(f, FactsError):
            results.append(failed(host.name, "reachable", f.message))
            continue
        reached[host.name] = f
        results.append(passed(host.name, "reachable", "facts gathered"))
    for host in hosts:
        hf = reached.get(host.name)
        if hf is None:
            continue
        for check in HOST_CHECKS:
            results.extend(check(cluster, host, hf))
        results.extend(check_fsync(host, probes))
        results.extend(check_connectivity(host, probes, {h.name: h.ssh.port for h in cluster.hosts}))
    results.extend(check_os_consistency(reached))
    results.extend(check_unique_hostnames(reached))
    results.extend(check_unique_product_uuids(reached))
    results.extend(check_unique_macs(reached))
    results.extend(check_clock_skew(reached, max_clock_skew_s))
    return make_report([h.name for h in hosts], results, now)


def run_probes(
    pool: TransportSource,
    cluster: Cluster,
    hosts: Iterable[Host],
    *,
    limit: int,
    connectivity: bool = True,
    fsync: bool = True,
    settled: frozenset[str] = frozenset(),
) -> ProbeResults:
    """``settled``: hosts already running as members; their disks and the flows between them are
    not probed again (a running etcd member's disk is what etcd itself measures)."""
    hosts = list(hosts)
    members = {h.name for h in cluster.etcd_members} - settled
    fsync_results = (
        run_fsync_probes(pool, [h for h in hosts if h.name in members], cluster.etcd.data_dir, limit=limit)
        if fsync
        else {}
    )
    listening, conn = (run_connectivity_probe(pool, cluster, hosts, limit=limit, settled=settled)
                       if connectivity else ({}, {}))
    return ProbeResults(fsync=fsync_results, listening=listening, connectivity=conn)


def preflight(
    cluster: Cluster,
    pool: TransportSource,
    *,
    hosts: Iterable[Host] | None = None,
    now: float | None = None,
    probes: bool = True,
    max_clock_skew_s: float = DEFAULT_MAX_SKEW_S,
    settled: Callable[[HostFacts], bool] | None = None,
) -> tuple[PreflightReport, dict[str, HostFacts | FactsError]]:
    """Gather facts, run the probes on the hosts that answered, check everything.

    Returns the report and the facts it was computed from (``up`` reuses them for planning).
    ``settled``: which hosts already run as members (``up`` passes its own test); the probes leave
    out their disks and the flows between two of them (run_probes).
    """
    selected = list(hosts) if hosts is not None else list(cluster.hosts)
    facts = gather_facts(pool, selected, limit=cluster.parallelism, etcd_data_dir=cluster.etcd.data_dir)
    reachable = [h for h in selected if isinstance(facts[h.name], HostFacts)]
    done = frozenset(name for name, f in facts.items() if settled is not None and isinstance(f, HostFacts) and settled(f))
    probe_results = run_probes(pool, cluster, reachable, limit=cluster.parallelism, settled=done) if probes else None
    report = run_preflight(
        cluster,
        facts,
        now=time.time() if now is None else now,
        probes=probe_results,
        max_clock_skew_s=max_clock_skew_s,
    )
    return report, facts


def unreachable_hosts(report: PreflightReport, failures=None) -> tuple[str, ...]:
    """Hosts whose "reachable" check failed (among ``failures``, default every failure): the CLI
    exits 5 for them rather than 4."""
    return tuple(r.host for r in (report.failures if failures is None else failures) if r.check == "reachable")
