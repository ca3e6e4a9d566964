"""What an interrupted run left drained on kubeforge's haproxy balancers: the markers the drain step
of kubeforge.plan.endpoint.drain writes (``MARKER_DIR/<server>``), read before planning so a plan
re-enables those servers first."""

from __future__ import annotations

import shlex

from kubeforge.model import Cluster, EndpointMode, Host
from kubeforge.transport.base import Command

MARKER_DIR = "/var/lib/kubeforge/haproxy-drained"


def balancers(cluster: Cluster) -> tuple[Host, ...]:
    """The balancers whose haproxy kubeforge runs in front of the API servers; none for kube-vip, an
    external balancer or a single control plane."""
    return cluster.load_balancers if cluster.endpoint.mode is EndpointMode.HAPROXY else ()


def list_marked() -> Command:
    """Read-only: the servers kubeforge left drained on a balancer (one name a line; none: empty)."""
    return Command(script=f"ls -1 {shlex.quote(MARKER_DIR)} 2>/dev/null || true", sudo=True, timeout=30,
                   description="read drained API servers")


def parse_marked(stdout: str) -> tuple[str, ...]:
    return tuple(stdout.split())


def read_drained(cluster: Cluster, pool) -> dict[str, tuple[str, ...]]:
    """Per balancer, the API servers kubeforge left drained there. A balancer that cannot be read
    is left out: the plan's own steps on it fail and say so."""
    lbs = balancers(cluster)
    if not lbs:
        return {}
    command = list_marked()
    result = pool.fanout(lbs, lambda t: parse_marked(t.run(command).stdout))
    return {o.host: o.value for o in result.outcomes if o.ok and o.value}
