"""``kubeforge facts``: gather the read-only facts of some or all hosts of an inventory."""

from __future__ import annotations

from collections.abc import Iterable

from kubeforge.errors import UsageError
from kubeforge.facts import FactsError, HostFacts, gather_facts
from kubeforge.facts.gather import TransportSource
from kubeforge.model import Cluster


def select_hosts(cluster: Cluster, names: Iterable[str] | None):
    """Hosts by name in inventory order; an unknown name is a usage error listing the known ones."""
    if names is None:
        return cluster.hosts
    wanted = [n for n in names if n]
    unknown = [n for n in wanted if n not in {h.name for h in cluster.hosts}]
    if unknown:
        raise UsageError(
            f"--hosts: no host named {', '.join(repr(n) for n in unknown)} in {cluster.source.name} "
            f"(hosts: {', '.join(h.name for h in cluster.hosts)})"
        )
    return cluster.select(wanted)


def collect_facts(
    cluster: Cluster, pool: TransportSource, *, hosts: Iterable[str] | None = None
) -> dict[str, HostFacts | FactsError]:
    return gather_facts(pool, select_hosts(cluster, hosts), limit=cluster.parallelism, etcd_data_dir=cluster.etcd.data_dir)
