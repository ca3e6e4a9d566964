"""Which container images a host needs for a Kubernetes version and its roles.

    images_for_host(cluster, host)            # -> (Image(...kube-apiserver:v1.35.0...), ...)
    images_for_host(cluster, host, version)   # an upgrade hop's images

kubeadm's list for a version (`kubeadm config images list`): kube-apiserver, kube-controller-manager,
kube-scheduler and kube-proxy at the Kubernetes version; etcd, CoreDNS and pause at the tags kubeadm
pins for the minor (kubeforge/model/versions.yaml, with sources). Every image follows
``spec.images.repository`` as kubeadm's ``imageRepository`` does, including kubeadm's one exception:
CoreDNS is ``registry.k8s.io/coredns/coredns`` upstream but ``<repository>/coredns`` elsewhere
(cmd/kubeadm/app/images/images.go, GetDNSImage). kube-vip, which kubeforge runs and kubeadm does
not know, is ``ghcr.io/kube-vip/kube-vip`` upstream and ``<repository>/kube-vip`` elsewhere.

Per role: control planes run the control-plane static pods (and etcd's when stacked, and kube-vip in
kube-vip mode); every node runs kube-proxy and pause; CoreDNS's Deployment tolerates the
control-plane taint and may land on any node, so every node carries it. The CNI's images (what a
local ``network.cni.manifest`` runs, read with the inventory) go to every node too: its DaemonSets run
everywhere, and its Deployments may land anywhere. They do not change with the Kubernetes version.
Dedicated etcd members run etcd from packages or release archives, and balancers run haproxy: no images.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeforge.model.cluster import DEFAULT_IMAGE_REPOSITORY, Cluster, EndpointMode, EtcdTopology, Host
from kubeforge.model.secret import Secret
from kubeforge.model.versions import KubeVersion, VersionError, kube_minor, own_image

_UPSTREAM_PREFIX = DEFAULT_IMAGE_REPOSITORY + "/"


@dataclass(frozen=True, order=True)
class Image:
    name: str  # repository/name without the tag: registry.k8s.io/kube-apiserver
    tag: str  # v1.35.0, 3.6.6-0; or a digest, sha256:... (a CNI manifest may pin one)
    component: str = ""  # what runs it: kube-apiserver, etcd, coredns, pause, kube-vip, cni

    @property
    def ref(self) -> str:
        return f"{self.name}{'@' if self.tag.startswith('sha256:') else ':'}{self.tag}"

    def __str__(self) -> str:
        return self.ref


def cni_image(ref: str) -> Image:
    """An Image from a normalized reference of the CNI manifest (``name:tag`` or ``name@sha256:...``)."""
    name, at, digest = ref.partition("@")
    if at:
        return Image(name, digest, "cni")
    name, _, tag = name.rpartition(":")
    return Image(name, tag, "cni")


def _in(repository: str, upstream_name: str) -> str:
    """``registry.k8s.io/x`` rewritten to ``<repository>/x``."""
    rest = upstream_name[len(_UPSTREAM_PREFIX):] if upstream_name.startswith(_UPSTREAM_PREFIX) else upstream_name
    return f"{repository}/{rest}"


def pause_image(cluster: Cluster, version: KubeVersion) -> Image:
    """kubeadm's pause image for ``version`` in the inventory's repository (containerd's sandbox image)."""
    m = kube_minor(version)
    if m is None:
        raise VersionError(f"no pause image known for Kubernetes {version.minor_str}")
    name, _, tag = m.pause.rpartition(":")
    return Image(_in(cluster.images.repository, name), tag, "pause")


def kube_vip_image(cluster: Cluster) -> Image:
    image, tag, _ = own_image("kubeVip")
    repo = cluster.images.repository
    name = image if repo == DEFAULT_IMAGE_REPOSITORY else f"{repo}/{image.rsplit('/', 1)[-1]}"
    return Image(name, tag, "kube-vip")


def kubeadm_images(cluster: Cluster, version: KubeVersion) -> dict[str, Image]:
    """component -> Image: kubeadm's whole list for ``version`` (etcd included)."""
    m = kube_minor(version)
    if m is None:
        raise VersionError(f"Kubernetes {version.minor_str} is not in kubeforge/model/versions.yaml")
    repo = cluster.images.repository
    out = {c: Image(f"{repo}/{c}", f"v{version}", c)
           for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")}
    out["coredns"] = Image(f"{repo}/coredns/coredns" if repo == DEFAULT_IMAGE_REPOSITORY else f"{repo}/coredns",
                           m.coredns, "coredns")
    out["pause"] = pause_image(cluster, version)
    out["etcd"] = Image(f"{repo}/etcd", m.etcd_image_tag, "etcd")
    return out


def images_for_host(cluster: Cluster, host: Host, version: KubeVersion | None = None) -> tuple[Image, ...]:
    """The images ``host`` needs to run Kubernetes ``version`` (default: the inventory's) in its
    roles, sorted by reference; () for hosts that are not nodes."""
    version = version or cluster.kubernetes_version
    if not (host.is_control_plane or host.is_worker):
        return ()
    k = kubeadm_images(cluster, version)
    wanted = ["kube-proxy", "pause", "coredns"]
    if host.is_control_plane:
        wanted += ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
        if cluster.etcd.topology is EtcdTopology.STACKED:
            wanted.append("etcd")
    out = [k[c] for c in wanted]
    if host.is_control_plane and cluster.endpoint.mode is EndpointMode.KUBE_VIP:
        out.append(kube_vip_image(cluster))
    out += [cni_image(ref) for ref in cluster.network.cni.images]
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class RegistryAccess:
    """What a registry's hosts.toml needs from the operator's machine, read before rendering
    (kubeforge.pki.registry): each registry's ``Authorization`` header value as a Secret, and the CA."""

    auth: tuple[tuple[str, Secret], ...] = ()  # registry host -> "Basic <base64(user:password)>"
    ca_pem: bytes | None = None

    def auth_for(self, registry: str) -> Secret | None:
        return dict(self.auth).get(registry)


def needs_registry_access(cluster: Cluster) -> bool:
    return bool(cluster.images.credentials) or cluster.images.ca is not None


def images_by_host(cluster: Cluster, version: KubeVersion | None = None) -> dict[str, tuple[Image, ...]]:
    """images_for_host for every host that needs any, in inventory order."""
    return {h.name: imgs for h in cluster.hosts if (imgs := images_for_host(cluster, h, version))}


# Per role, as images_for_host decides it: what a control plane runs beyond what every node runs
# (etcd only when stacked, kube-vip only in kube-vip mode), and what every Kubernetes node runs.
ROLE_COMPONENTS = {
    "control-plane": ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kube-vip"),
    "every node": ("kube-proxy", "pause", "coredns"),
}
OPTIONAL_COMPONENTS = {"etcd": "stacked etcd only", "kube-vip": "controlPlaneEndpoint.mode kube-vip only"}


def component_tags(version: KubeVersion) -> dict[str, str]:
    """component -> the tag its image has for ``version`` (whatever the repository), for reading a
    bundle without an inventory."""
    m = kube_minor(version)
    if m is None:
        raise VersionError(f"Kubernetes {version.minor_str} is not in kubeforge/model/versions.yaml")
    tags = {c: f"v{version}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")}
    tags.update({"etcd": m.etcd_image_tag, "coredns": m.coredns, "pause": m.pause.rpartition(":")[2],
                 "kube-vip": own_image("kubeVip")[1]})
    return tags
