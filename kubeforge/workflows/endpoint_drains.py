"""What an interrupted run left drained on kubeforge's haproxy balancers (the markers of
kubeforge.plan.endpoint.drain), read before planning so the plan re-enables it first."""

from __future__ import annotations

from kubeforge.model import Cluster
from kubeforge.plan.endpoint.drain import balancers, list_marked


def read_drained(cluster: Cluster, pool) -> dict[str, tuple[str, ...]]:
    """Per balancer, the API servers kubeforge left drained there. A balancer that cannot be read
    is left out: the plan's own steps on it fail and say so."""
    lbs = balancers(cluster)
    if not lbs:
        return {}
    command = list_marked()
    result = pool.fanout(lbs, lambda t: tuple(t.run(command).stdout.split()))
    return {o.host: o.value for o in result.outcomes if o.ok and o.value}
