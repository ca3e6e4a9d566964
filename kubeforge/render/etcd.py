"""Dedicated etcd members (external topology): the environment file and the systemd unit.

Stacked etcd is kubeadm's static pod, so nothing is rendered for it here.
"""

from __future__ import annotations

from typing import Literal

from kubeforge.model import Host, RenderedFile
from kubeforge.render.context import ETCD_PKI_DIR, ClusterContext, url_host
from kubeforge.render.env import render_template

ENV_PATH = "/etc/etcd/etcd.env"
UNIT_PATH = "/etc/systemd/system/etcd.service"
# Debian's etcd-server (3.4) and the upstream release tarball both install etcd here.
ETCD_BINARY = "/usr/bin/etcd"

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
        "etcd_binary": ETCD_BINARY,
    }
    return [
        RenderedFile(ENV_PATH, render_template("etcd/etcd.env.j2", **context), source="etcd/etcd.env.j2"),
        RenderedFile(UNIT_PATH, render_template("etcd/etcd.service.j2", **context), source="etcd/etcd.service.j2"),
    ]
