"""Every file kubeforge places on a host, assembled from the renderers in a fixed order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubeforge.model import Cluster, Host, RenderedFile
from kubeforge.model.images import RegistryAccess
from kubeforge.model.versions import KubeVersion
from kubeforge.render.context import ClusterContext, ClusterSecretsLike, cluster_context
from kubeforge.render.endpoint import render_endpoint
from kubeforge.render.etcd import ClusterState, render_etcd
from kubeforge.render.host_prep import render_host_prep
from kubeforge.render.kubeadm import render_kubeadm
from kubeforge.render.packages import render_packages
from kubeforge.render.record import render_record
from kubeforge.render.registries import render_registries


class DuplicateFileError(ValueError):
    """Two renderers (or a renderer and the PKI) claimed the same remote path: a kubeforge bug."""


def _render(
    ctx: ClusterContext,
    host: Host,
    secrets: ClusterSecretsLike | None,
    ca_cert_hash: str | None,
    extra_files: Sequence[RenderedFile],
    etcd_cluster_state: ClusterState,
) -> list[RenderedFile]:
    files: list[RenderedFile] = []
    files += render_packages(ctx, host)
    files += render_host_prep(ctx, host)
    files += render_registries(ctx, host)
    files += extra_files
    files += render_etcd(ctx, host, initial_cluster_state=etcd_cluster_state)
    files += render_endpoint(ctx, host)
    files += render_kubeadm(ctx, host, secrets, ca_cert_hash)
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise DuplicateFileError(f"{host.name}: {f.path} rendered twice")
        seen.add(f.path)
    files.append(render_record(ctx.cluster.name, ctx.version, host, files))
    return files


def render_host(
    cluster: Cluster,
    host: Host,
    *,
    secrets: ClusterSecretsLike | None = None,
    ca_cert_hash: str | None = None,
    extra_files: Sequence[RenderedFile] = (),
    kubernetes_version: KubeVersion | None = None,
    etcd_cluster_state: ClusterState = "new",
    registry_access: RegistryAccess | None = None,
) -> list[RenderedFile]:
    """Every file kubeforge places on ``host``, applied.json last.

    ``extra_files`` are the host's PKI files (kubeforge.pki.host_files). ``kubernetes_version``
    overrides the inventory's for an upgrade hop (package sources, pin, kubeadm configs).
    kubeadm init/join files need ``secrets`` (and joins ``ca_cert_hash``); without them those files
    are left out. ``registry_access`` (kubeforge.pki.read_registry_access) is needed when the
    inventory names registry credentials or a CA.
    """
    ctx = cluster_context(cluster, kubernetes_version, registry_access)
    return _render(ctx, host, secrets, ca_cert_hash, extra_files, etcd_cluster_state)


def render_cluster(
    cluster: Cluster,
    *,
    secrets: ClusterSecretsLike | None = None,
    ca_cert_hash: str | None = None,
    extra_files: Mapping[str, Sequence[RenderedFile]] | None = None,
    kubernetes_version: KubeVersion | None = None,
    etcd_cluster_state: ClusterState = "new",
    registry_access: RegistryAccess | None = None,
) -> dict[str, list[RenderedFile]]:
    """render_host for every host (in inventory order), sharing the cluster-wide values."""
    ctx = cluster_context(cluster, kubernetes_version, registry_access)
    extra_files = extra_files or {}
    return {
        h.name: _render(ctx, h, secrets, ca_cert_hash, extra_files.get(h.name, ()), etcd_cluster_state)
        for h in cluster.hosts
    }
