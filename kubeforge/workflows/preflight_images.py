"""The images preflight of `up` and `upgrade` (kubeforge.facts.preflight.images): before any change,
every image each node needs for this run is present, in the offline bundle, or its configured
registry answers from that node. A failure is CheckFailed (exit 4) naming host and image/registry.

    results = check_needed_images(cluster, pool, images_by_host(cluster), warn=print)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from kubeforge.errors import CheckFailed
from kubeforge.facts.preflight.images import (
    CHECK,
    check_images,
    read_images,
    registry_sources,
)
from kubeforge.facts.preflight.report import CheckResult, Status, failed
from kubeforge.model import Cluster
from kubeforge.model.images import Image
from kubeforge.pki.registry import read_registry_access
from kubeforge.plan.bundle_images import load_image_part

log = logging.getLogger("kubeforge.preflight")


def images_results(cluster: Cluster, pool, needed: Mapping[str, Iterable[Image]]) -> list[CheckResult]:
    """One images result per node that needs any image (read-only probes, nodes in parallel)."""
    wanted = {h: sorted({i.ref for i in imgs}) for h, imgs in needed.items()}
    hosts = [h for h in cluster.nodes if wanted.get(h.name)]
    if not hosts:
        return []
    part = load_image_part(cluster)
    bundle = frozenset(part.by_ref()) if part is not None else None
    sources = registry_sources(cluster, {r for refs in wanted.values() for r in refs}) if bundle is None else {}
    endpoints = sorted({u for s in sources.values() for u in s.endpoints})
    access = read_registry_access(cluster) if endpoints else None
    outcome = read_images(pool, hosts, endpoints, access.ca_pem if access is not None else None)
    results: list[CheckResult] = []
    for o in outcome.outcomes:
        if o.ok:
            results += check_images(o.host, wanted[o.host], o.value, bundle=bundle, sources=sources)
        else:
            results.append(failed(o.host, CHECK, f"cannot list images or ask the registry: {o.message}"))
    return results


def check_needed_images(cluster: Cluster, pool, needed: Mapping[str, Iterable[Image]], *,
                        warn: Callable[[str], None] | None = None) -> list[CheckResult]:
    """images_results, then CheckFailed (exit 4) for any failure; warnings go to ``warn``."""
    results = images_results(cluster, pool, needed)
    failures = [r for r in results if r.status is Status.FAIL]
    if failures:
        lines = "; ".join(f"[{r.host}] {r.message}" for r in failures[:10])
        raise CheckFailed(f"images preflight failed, nothing was changed: {lines}",
                          hint="add the images to the offline bundle (images/manifest.json), push them to the "
                               "registry, or fix the registry's address, CA or the hosts' route to it "
                               "(docs/airgapped.md)")
    for r in results:
        if r.status is Status.WARN:
            log.info("images preflight: %s", r.message, extra={"host": r.host})
            if warn is not None:
                warn(f"preflight warning: [{r.host}] {CHECK}: {r.message}")
    return results
