"""Dedicated etcd members (external topology): the environment file and the systemd unit.

Stacked etcd is kubeadm's static pod, so nothing is rendered for it here.
"""

from __future__ import annotations

from typing import Literal

from kubeforge.model import Cluster, Host, PackageSourceKind, RenderedFile
from kubeforge.render.context import ETCD_PKI_DIR, ClusterContext, url_host
from kubeforge.render.env import render_template

ENV_PATH = "/etc/etcd/etcd.env"
UNIT_PATH = "/etc/systemd/system/etcd.service"
# Where Debian's etcd-server package installs etcd.
ETCD_BINARY = "/usr/bin/etcd"
# Where kubeforge unpacks etcd release archives (etcd, etcdctl, etcdutl): first in sudo's
# secure_path and in root's default PATH, so etcdctl is found there either way.
ARCHIVE_BIN_DIR = "/usr/local/bin"


def etcd_from_archive(cluster: Cluster) -> bool:
    """Whether etcd comes from release archives (releaseURL, upstream, offline) rather than from the
    mirror's Debian packages."""
    return cluster.etcd.release_url is not None or cluster.packages.kind is not PackageSourceKind.MIRROR


def etcd_binary(cluster: Cluster) -> str:
    return f"{ARCHIVE_BIN_DIR}/etcd" if etcd_from_archive(cluster) else ETCD_BINARY

ClusterState = Literal["new", "existing"]


def render_etcd(
    ctx: ClusterContext,
    host: Host,
    *,
    initial_cluster_state: ClusterState = "new",
    initial_cluster_token: str | None = None,
) -> list[RenderedFile]:
    """etcd.env + etcd.service for a dedicated member; [] for any other host or for stacked etcd.

    ``initial_cluster_state`` is ``existing`` when a member joins (or rejoins) a running cluster;
    ``initial_cluster_token`` defaults to the cluster name.
    """
    if initial_cluster_state not in ("new", "existing"):
        raise ValueError(f"initial_cluster_state must be new or existing, not {initial_cluster_state!r}")
    c = ctx.cluster
    if not ctx.external_etcd or not host.is_etcd:
        return []
    etcd = c.etcd
    addr = url_host(host.internal_address)
    client_url = f"https://{addr}:{etcd.client_port}"
    context = {
        "c": c,
        "host": host,
        "etcd": etcd,
        "pki_dir": ETCD_PKI_DIR,
        "listen_client_urls": ",".join(dict.fromkeys([client_url, f"https://127.0.0.1:{etcd.client_port}"])),
        "advertise_client_urls": client_url,
        "peer_url": f"https://{addr}:{etcd.peer_port}",
        "initial_cluster": ctx.etcd_initial_cluster,
        "initial_cluster_state": initial_cluster_state,
        "initial_cluster_token": initial_cluster_token or c.name,
        "env_path": ENV_PATH,
        "etcd_binary": etcd_binary(c),
    }
    return [
        RenderedFile(ENV_PATH, render_template("etcd/etcd.env.j2", **context), source="etcd/etcd.env.j2"),
        RenderedFile(UNIT_PATH, render_template("etcd/etcd.service.j2", **context), source="etcd/etcd.service.j2"),
    ]
