"""kubeadm configuration files: init (first control plane), join (the other nodes), upgrade.

The API version follows the Kubernetes version (v1beta4 from 1.31, v1beta3 before); one template per
kind handles both, branching only where the shapes differ (extraArgs, timeouts, imagePullSerial).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeforge.model import Cluster, Host, RenderedFile, Taint
from kubeforge.render.context import (
    CRI_SOCKET,
    KUBE_PKI_DIR,
    KUBEFORGE_DIR,
    ClusterContext,
    ClusterSecretsLike,
    self_labels,
)
from kubeforge.render.env import duration, render_template

INIT_PATH = f"{KUBEFORGE_DIR}/kubeadm-init.yaml"
JOIN_PATH = f"{KUBEFORGE_DIR}/kubeadm-join.yaml"
UPGRADE_PATH = f"{KUBEFORGE_DIR}/kubeadm-upgrade.yaml"
APISERVER_CERTS_PATH = f"{KUBEFORGE_DIR}/kubeadm-apiserver-certs.yaml"

CONTROL_PLANE_TAINT = Taint(key="node-role.kubernetes.io/control-plane", value=None, effect="NoSchedule")

_ENCRYPTION_ALGORITHMS = {"ecdsa-p256": "ECDSA-P256", "rsa-2048": "RSA-2048", "rsa-4096": "RSA-4096"}


@dataclass(frozen=True)
class NodeView:
    """The per-node values the kubeadm templates read."""

    name: str
    internal_address: str
    cri_socket: str
    kubelet_args: tuple[tuple[str, str], ...]
    taints: tuple[Taint, ...]


def node_view(cluster: Cluster, host: Host) -> NodeView:
    args: dict[str, str] = {"node-ip": host.internal_address}
    labels = self_labels(host)
    if labels:
        args["node-labels"] = labels
    for name, value in cluster.kubelet.extra_args:
        args[name] = value
    taints = list(host.taints)
    if host.is_control_plane and not cluster.allow_workloads_on_control_planes:
        if all(t.key != CONTROL_PLANE_TAINT.key for t in taints):
            taints.insert(0, CONTROL_PLANE_TAINT)
    return NodeView(
        name=host.name,
        internal_address=host.internal_address,
        cri_socket=CRI_SOCKET,
        kubelet_args=tuple(sorted(args.items())),
        taints=tuple(taints),
    )


def _common(ctx: ClusterContext, host: Host) -> dict[str, object]:
    c = ctx.cluster
    return {
        "c": c,
        "node": node_view(c, host),
        "version": ctx.version,
        "api_version": ctx.api_version,
        "v1beta4": ctx.is_v1beta4,
        "kube_pki_dir": KUBE_PKI_DIR,
        "cri_socket": CRI_SOCKET,
        "external_etcd": ctx.external_etcd,
        "etcd_endpoints": ctx.etcd_endpoints,
        "cert_sans": ctx.cert_sans,
        "encryption_algorithm": _ENCRYPTION_ALGORITHMS.get(c.pki.key_type, "RSA-2048"),
        "ca_validity": duration(c.pki.ca_days * 86400),
        "leaf_validity": duration(c.pki.leaf_days * 86400),
    }


def render_init(ctx: ClusterContext, host: Host, secrets: ClusterSecretsLike) -> RenderedFile:
    """Init + Cluster + Kubelet + KubeProxy configuration for the first control plane."""
    # The token lives as long as the local store says it does (ClusterSecrets.bootstrap_token_ttl),
    # so kubeforge and the cluster agree on when it must be rotated.
    ttl = getattr(secrets, "bootstrap_token_ttl", None)
    content = render_template(
        "kubeadm/init.yaml.j2",
        token_ttl=duration(int(ttl.total_seconds())) if ttl else "24h0m0s",
        token=secrets.bootstrap_token.reveal(),
        certificate_key=secrets.certificate_key.reveal(),
        **_common(ctx, host),
    )
    return RenderedFile(INIT_PATH, content, mode=0o600, secret=True, source="kubeadm/init.yaml.j2")


def render_join(
    ctx: ClusterContext, host: Host, secrets: ClusterSecretsLike, ca_cert_hash: str
) -> RenderedFile:
    """JoinConfiguration for a further control plane or a worker."""
    content = render_template(
        "kubeadm/join.yaml.j2",
        token=secrets.bootstrap_token.reveal(),
        certificate_key=secrets.certificate_key.reveal(),
        ca_cert_hash=ca_cert_hash,
        control_plane=host.is_control_plane,
        **_common(ctx, host),
    )
    return RenderedFile(JOIN_PATH, content, mode=0o600, secret=True, source="kubeadm/join.yaml.j2")


def render_upgrade(ctx: ClusterContext, host: Host) -> RenderedFile | None:
    """UpgradeConfiguration (v1beta4 only: v1beta3 has no such kind and takes flags instead)."""
    if not ctx.is_v1beta4:
        return None
    # The same bytes on every node of the cluster: rendered once.
    return ctx.shared(
        ("kubeadm-upgrade",),
        lambda: RenderedFile(
            UPGRADE_PATH,
            render_template("kubeadm/upgrade.yaml.j2", **_common(ctx, host)),
            mode=0o644,
            source="kubeadm/upgrade.yaml.j2",
        ),
    )


def render_apiserver_certs(ctx: ClusterContext, host: Host) -> RenderedFile:
    """InitConfiguration (this control plane's advertise address) + ClusterConfiguration, for
    ``kubeadm init phase certs apiserver`` and ``init phase upload-config kubeadm`` when the API
    server's names change on a running cluster. Not part of ``render_kubeadm``: only the plan that
    re-issues the certificate puts it, so a converged host is never sent a new file."""
    content = render_template("kubeadm/apiserver-certs.yaml.j2", **_common(ctx, host))
    return RenderedFile(APISERVER_CERTS_PATH, content, mode=0o600, source="kubeadm/apiserver-certs.yaml.j2")


def render_kubeadm(
    ctx: ClusterContext,
    host: Host,
    secrets: ClusterSecretsLike | None,
    ca_cert_hash: str | None,
) -> list[RenderedFile]:
    """Every kubeadm file of a node. Init/join need the secrets (and join the CA hash): without them
    those files are left out rather than rendered with placeholders that could be applied."""
    if not (host.is_control_plane or host.is_worker):
        return []
    files: list[RenderedFile] = []
    if host.name == ctx.first_control_plane:
        if secrets is not None:
            files.append(render_init(ctx, host, secrets))
    elif secrets is not None and ca_cert_hash:
        files.append(render_join(ctx, host, secrets, ca_cert_hash))
    upgrade = render_upgrade(ctx, host)
    if upgrade is not None:
        files.append(upgrade)
    return files
