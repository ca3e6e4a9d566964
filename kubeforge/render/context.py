"""Values every host's files share, computed once per cluster (render_cluster reuses them)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from kubeforge.model import Cluster, EtcdTopology, Host, Secret
from kubeforge.model.images import RegistryAccess, pause_image
from kubeforge.model.kubeadm_paths import ETCD_PKI, KUBE_PKI
from kubeforge.model.versions import KubeVersion, kubeadm_api_version

# Paths the PKI places on hosts (kubeadm's layout for Kubernetes, ours for dedicated etcd members).
KUBE_PKI_DIR = KUBE_PKI
ETCD_PKI_DIR = ETCD_PKI
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
KUBEFORGE_DIR = "/etc/kubeforge"

# kubelet accepts only these label prefixes from the node itself (NodeRestriction admission);
# other labels are applied with kubectl after the node has joined.
_SELF_LABEL_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")


class ClusterSecretsLike(Protocol):
    """What render needs from the resolved secrets (kubeforge.pki provides the real object)."""

    @property
    def bootstrap_token(self) -> Secret: ...

    @property
    def certificate_key(self) -> Secret: ...


@dataclass(frozen=True)
class ClusterContext:
    cluster: Cluster
    version: KubeVersion
    api_version: str
    cert_sans: tuple[str, ...]
    etcd_endpoints: tuple[str, ...]  # https://addr:2379 of every external member
    etcd_initial_cluster: str  # name=https://addr:2380,...
    pause_image: str
    control_planes: tuple[Host, ...] = ()
    first_control_plane: str = ""
    load_balancers: tuple[Host, ...] = ()
    registry_access: RegistryAccess | None = None  # credentials and CA for hosts.toml (kubeforge.pki.registry)
    # Files whose bytes do not depend on the host are rendered once per cluster and shared.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def shared(self, key: tuple, make):
        """``make()`` once per key for this cluster (e.g. the containerd config of every node)."""
        try:
            return self.memo[key]
        except KeyError:
            value = self.memo[key] = make()
            return value

    @property
    def is_v1beta4(self) -> bool:
        return self.api_version.endswith("/v1beta4")

    @property
    def external_etcd(self) -> bool:
        return self.cluster.etcd.topology is EtcdTopology.EXTERNAL


def url_host(address: str) -> str:
    """An address as it appears inside a URL (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def _unique(items) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        if item and item not in seen:
            seen[item] = None
    return tuple(seen)


def cluster_context(cluster: Cluster, version: KubeVersion | None = None,
                    registry_access: RegistryAccess | None = None) -> ClusterContext:
    """Everything shared by all hosts; ``version`` overrides the inventory's (an upgrade hop)."""
    version = version or cluster.kubernetes_version
    sans = [cluster.endpoint.host]
    for cp in cluster.control_planes:
        sans.extend(cp.addresses)
        sans.append(cp.name)
    sans.extend(cluster.endpoint.extra_sans)
    members = cluster.etcd_members if cluster.etcd.topology is EtcdTopology.EXTERNAL else ()
    etcd = cluster.etcd
    return ClusterContext(
        cluster=cluster,
        version=version,
        api_version=kubeadm_api_version(version),
        cert_sans=_unique(sans),
        etcd_endpoints=tuple(f"https://{url_host(m.internal_address)}:{etcd.client_port}" for m in members),
        etcd_initial_cluster=",".join(
            f"{m.name}=https://{url_host(m.internal_address)}:{etcd.peer_port}" for m in cluster.etcd_members
        ),
        pause_image=pause_image(cluster, version).ref,  # containerd's sandbox image must match kubeadm's
        control_planes=cluster.control_planes,
        first_control_plane=cluster.control_planes[0].name if cluster.control_planes else "",
        load_balancers=cluster.load_balancers,
        registry_access=registry_access,
    )


def self_labels(host: Host) -> str:
    """``--node-labels`` value: the host labels the kubelet may set on its own node."""
    return ",".join(
        f"{k}={v}" for k, v in sorted(host.labels.items()) if k.startswith(_SELF_LABEL_PREFIXES)
    )


def is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False
