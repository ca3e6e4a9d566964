"""Node preparation: kernel modules, sysctls, containerd and crictl configuration."""

from __future__ import annotations

from kubeforge.model import Host, RenderedFile
from kubeforge.render.context import CRI_SOCKET, ClusterContext, is_ipv6
from kubeforge.render.env import render_template
from kubeforge.render.registries import CERTS_DIR

MODULES_PATH = "/etc/modules-load.d/kubeforge.conf"
SYSCTL_PATH = "/etc/sysctl.d/99-kubeforge.conf"
CONTAINERD_PATH = "/etc/containerd/config.toml"
CRICTL_PATH = "/etc/crictl.yaml"


def render_host_prep(ctx: ClusterContext, host: Host) -> list[RenderedFile]:
    """Files every Kubernetes node needs before kubeadm runs; [] for etcd-only and balancer hosts."""
    if not (host.is_control_plane or host.is_worker):
        return []
    c = ctx.cluster
    ipv6 = is_ipv6(host.internal_address) or ":" in c.network.pod_cidr
    return list(ctx.shared(("host-prep", ipv6), lambda: _render(ctx, ipv6)))


def _render(ctx: ClusterContext, ipv6: bool) -> list[RenderedFile]:
    context = {"c": ctx.cluster, "pause_image": ctx.pause_image, "cri_socket": CRI_SOCKET, "ipv6": ipv6,
               "certs_dir": CERTS_DIR}
    return [
        RenderedFile(path, render_template(template, **context), source=template)
        for path, template in (
            (MODULES_PATH, "host/modules-load.conf.j2"),
            (SYSCTL_PATH, "host/sysctl.conf.j2"),
            (CONTAINERD_PATH, "host/containerd-config.toml.j2"),
            (CRICTL_PATH, "host/crictl.yaml.j2"),
        )
    ]
