"""``kubeforge render``'s work: ensure the local PKI and secrets, then render every host's files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeforge.model import Cluster, RenderedFile
    from kubeforge.pki import PkiResult


def render_inventory(cluster: Cluster) -> tuple[dict[str, list[RenderedFile]], PkiResult]:
    """Ensure the PKI and secrets in the local store, then render every host with its PKI files."""
    from kubeforge.pki import ensure_pki, ensure_secrets, host_files
    from kubeforge.pki.registry import read_registry_access
    from kubeforge.render import render_cluster

    registry = read_registry_access(cluster)  # a missing password stops us before the PKI is created
    pki = ensure_pki(cluster)
    secrets = ensure_secrets(cluster)
    extra = {h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts}
    rendered = render_cluster(
        cluster, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash, extra_files=extra,
        registry_access=registry,
    )
    return rendered, pki


def render_to(cluster: Cluster, out_dir: Path | None = None):
    """Render into ``out_dir`` (default: the state dir's ``rendered/``): (out dir, trees, pki)."""
    from kubeforge.render.tree import write_tree

    rendered, pki = render_inventory(cluster)
    target = out_dir or (cluster.state_dir / "rendered")
    return target, write_tree(target, rendered), pki
