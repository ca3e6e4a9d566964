"""What every lifecycle workflow does around its plan: facts, the live cluster state from the first
control plane, secrets and files resolved before planning; then the run engine
(kubeforge.execute.engine) over the very Plan that was shown and confirmed.

    facts = gather(cluster, pool)                         # read-only, every host in parallel
    state = probe_cluster(cluster, pool)                  # kubeforge.facts.cluster: the first control plane
    run = execute(plan, site(cluster, pool, run_dir=..., log_path=...), options, confirm=..., events=...)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from kubeforge.errors import TransportError
from kubeforge.execute import Site
from kubeforge.facts import FactsError, HostFacts
from kubeforge.model import Cluster
from kubeforge.model.files import file_sha256 as model_file_sha256

log = logging.getLogger("kubeforge.workflows")


def reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    return {n: f for n, f in facts.items() if isinstance(f, HostFacts)}


def require_reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    down = [f for f in facts.values() if isinstance(f, FactsError)]
    if down:
        names = ", ".join(f.host for f in down)
        raise TransportError(names, f"{len(down)} host(s) gave no facts: {down[0].message}")
    return reached(facts)


def file_sha256(path: Path) -> str | None:
    """The local file's sha256, or None when it is not there."""
    try:
        return model_file_sha256(path)
    except FileNotFoundError:
        return None


def site(cluster: Cluster, pool, *, run_dir: Path | None, log_path: Path | None,
         lock_host: str | None = None) -> Site:
    """Where a run of this cluster happens: its state dir, its hosts, the cluster lock on the first
    control plane (unless ``lock_host`` names another), the journal beside the run's log."""
    return Site(cluster.state_dir, pool, lock_host or cluster.first_control_plane.name,
                run_dir=run_dir, log_path=log_path)
