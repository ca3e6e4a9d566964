"""The cluster model: frozen, complete (every default applied once, by kubeforge.inventory.build).

Nothing here does I/O. Everything downstream (facts, render, pki, plan) reads these objects only.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubeforge.model.versions import EtcdVersion, KubeVersion


class Role(str, enum.Enum):
    CONTROL_PLANE = "control-plane"
    ETCD = "etcd"
    WORKER = "worker"
    LOAD_BALANCER = "load-balancer"

    def __str__(self) -> str:
        return self.value


class HostKeyPolicy(str, enum.Enum):
    STRICT = "strict"  # known_hosts or pinned key only; unknown keys refused
    ACCEPT_NEW = "accept-new"  # unknown keys recorded in known_hosts; changed keys always refused

    def __str__(self) -> str:
        return self.value


class EndpointMode(str, enum.Enum):
    KUBE_VIP = "kube-vip"
    HAPROXY = "haproxy"  # haproxy + keepalived on load-balancer hosts
    EXTERNAL = "external"  # a balancer kubeforge does not manage
    NONE = "none"  # single control plane, the endpoint is that host

    def __str__(self) -> str:
        return self.value


class EtcdTopology(str, enum.Enum):
    EXTERNAL = "external"
    STACKED = "stacked"

    def __str__(self) -> str:
        return self.value


class PackageSourceKind(str, enum.Enum):
    UPSTREAM = "upstream"  # pkgs.k8s.io per minor + Debian for etcd/containerd
    MIRROR = "mirror"  # an apt mirror laid out like upstream (air-gapped sites)
    OFFLINE = "offline"  # .deb files (and etcd release archives) pushed from the operator's machine

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Bastion:
    address: str
    port: int = 22
    user: str | None = None
    identity_file: Path | None = None
    host_key: str | None = None  # pinned "ssh-ed25519 AAAA..." for the bastion itself


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    bastion: Bastion | None = None
    connect_timeout: float = 10.0
    connect_retries: int = 3
    use_agent: bool = True
    sudo: bool = True  # run privileged commands with sudo when user is not root
    # OpenSSH client config read for HostName, User, Port, IdentityFile and ProxyJump of each host;
    # None: ~/.ssh/config when it exists. Path("none") reads none (as ``ssh -F none``).
    ssh_config: Path | None = None
    # the settings the inventory wrote itself ("user", "port", "identity_file", "bastion"): they win
    # over the ssh config, as ssh's -l/-p/-i/-J win over it
    given: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute

    def __str__(self) -> str:
        return f"{self.key}{'=' + self.value if self.value else ''}:{self.effect}"


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # the address kubeforge connects to over SSH
    internal_address: str  # the address cluster traffic uses (defaults to ``address``)
    roles: frozenset[Role]
    ssh: SshSettings
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    host_key: str | None = None  # pinned host key, overrides known_hosts
    origin: str = ""  # "inventory.yaml:14:5", for messages that point at the host's entry

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def is_control_plane(self) -> bool:
        return Role.CONTROL_PLANE in self.roles

    @property
    def is_worker(self) -> bool:
        return Role.WORKER in self.roles

    @property
    def is_etcd(self) -> bool:
        return Role.ETCD in self.roles

    @property
    def is_load_balancer(self) -> bool:
        return Role.LOAD_BALANCER in self.roles

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address of the host, without repeats, connect address first."""
        out = [self.address]
        if self.internal_address not in out:
            out.append(self.internal_address)
        return tuple(out)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class CniSpec:
    """The CNI manifest, applied once after the first control plane is up."""

    manifest: str | None  # a local path (relative to the inventory) or an https URL; None: no CNI
    name: str = "custom"  # calico, cilium, flannel, custom...
    # what a local manifest's pod templates run, normalized (kubeforge.inventory.cni_images), read
    # when the inventory is loaded; () for a URL, whose content kubeforge never sees
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cluster_domain: str = "cluster.local"
    cni: CniSpec = field(default_factory=lambda: CniSpec(manifest=None))

    @property
    def dns_service_ip(self) -> str:
        """The 10th address of the service range, as kubeadm picks it."""
        net = ipaddress.ip_network(self.service_cidr, strict=False)
        return str(net.network_address + 10)

    @property
    def api_service_ip(self) -> str:
        net = ipaddress.ip_network(self.service_cidr, strict=False)
        return str(net.network_address + 1)


@dataclass(frozen=True)
class Endpoint:
    host: str  # DNS name or VIP the API is reached at
    port: int = 6443
    mode: EndpointMode = EndpointMode.NONE
    interface: str | None = None  # NIC the VIP lives on (kube-vip, keepalived)
    virtual_router_id: int = 51  # keepalived VRRP id
    extra_sans: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class BackupSettings:
    directory: Path  # absolute; default <state_dir>/backups
    keep: int = 7
    max_age_days: int | None = None
    encryption: str = "none"  # none | keyfile | passphrase
    key_file: Path | None = None  # for keyfile encryption; never beside the backups
    include_pki: bool = True


@dataclass(frozen=True)
class EtcdSpec:
    topology: EtcdTopology
    version: EtcdVersion
    data_dir: str = "/var/lib/etcd"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    quota_backend_bytes: int = 2 * 1024**3
    snapshot_count: int = 10000
    client_port: int = 2379
    peer_port: int = 2380
    backup: BackupSettings = field(default_factory=lambda: BackupSettings(directory=Path("backups")))
    # etcd release archives at {release_url}/v{V}/etcd-v{V}-linux-{arch}.tar.gz with SHA256SUMS
    # beside them; None: the package source decides (see kubeforge.plan.etcd.source).
    release_url: str | None = None
    # Operator-pinned sha256 of release archives per etcd version ("3.5.16", hex); they win over
    # the download site's SHA256SUMS.
    checksums: tuple[tuple[str, str], ...] = ()

    def pinned_checksum(self, version: object) -> str | None:
        return dict(self.checksums).get(str(version))


@dataclass(frozen=True)
class PackageSource:
    kind: PackageSourceKind = PackageSourceKind.UPSTREAM
    # MIRROR: base URL of flat apt repositories laid out like upstream: Kubernetes per minor at
    # {url}/kubernetes/v{major.minor}/deb/ (``deb [trusted=yes] URL /``) and Debian packages
    # (etcd, containerd, runc, haproxy, keepalived) at {url}/debian/ (``deb [trusted=yes] URL ./``).
    mirror_url: str | None = None
    debian_suite: str = "bookworm"
    # OFFLINE: a local directory of .deb files, pushed to every host and installed with apt.
    bundle_dir: Path | None = None
    # pkgs.k8s.io and the Debian archive for UPSTREAM
    upstream_url: str = "https://pkgs.k8s.io/core:/stable:"
    containerd_package: str = "containerd"
    etcd_packages: tuple[str, ...] = ("etcd-server", "etcd-client")
    gpg_key_url: str | None = None  # None with MIRROR: the mirror is trusted ([trusted=yes])


DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"


@dataclass(frozen=True)
class RegistryCredential:
    """Basic-auth credentials for one registry host (``registry.example.com:5000``). The password is
    never in the model: only where to read it on the operator's machine (a file or an env var)."""

    registry: str
    username: str
    password_file: Path | None = None
    password_env: str | None = None

    @property
    def password_source(self) -> str:
        return f"file {self.password_file}" if self.password_file else f"environment variable {self.password_env}"


@dataclass(frozen=True)
class ImageSettings:
    """Where container images come from (spec.images)."""

    # kubeadm's imageRepository; pause, CoreDNS, etcd and kube-vip follow it (kubeforge.model.images)
    repository: str = DEFAULT_IMAGE_REPOSITORY
    mirrors: tuple[tuple[str, tuple[str, ...]], ...] = ()  # registry host -> endpoint URLs, in order
    credentials: tuple[RegistryCredential, ...] = ()
    ca: Path | None = None  # a CA (PEM) on the operator's machine that signs the registries' certificates

    @property
    def registry(self) -> str:
        """The registry host of ``repository`` (``registry.k8s.io``, ``reg.example:5000``)."""
        return self.repository.split("/", 1)[0]

    def credential_for(self, registry: str) -> RegistryCredential | None:
        return next((c for c in self.credentials if c.registry == registry), None)

    @property
    def configured_registries(self) -> tuple[str, ...]:
        """Registries that get a containerd hosts.toml: each mirrored one, each with credentials, and
        the repository's own when there is a CA or credentials for it."""
        out = [r for r, _ in self.mirrors]
        out += [c.registry for c in self.credentials if c.registry not in out]
        if self.ca is not None and self.registry not in out:
            out.append(self.registry)
        return tuple(out)


@dataclass(frozen=True)
class UpgradePolicy:
    max_unavailable: str = "1"  # a count ("2") or a percentage of workers ("25%")
    drain_timeout_s: int = 300
    drain_grace_period_s: int = -1  # -1: the pod's own terminationGracePeriodSeconds
    delete_emptydir_data: bool = True
    ignore_daemonsets: bool = True
    leave_cordoned_on_failure: bool = False
    node_ready_timeout_s: int = 300
    # Pods no controller manages are deleted for good by a drain: only with --force-bare-pods
    force_bare_pods: bool = False

    def batch_size(self, workers: int) -> int:
        """Workers upgraded at once (at least 1, at most ``workers``)."""
        if workers <= 0:
            return 0
        spec = self.max_unavailable.strip()
        if spec.endswith("%"):
            n = int(workers * float(spec[:-1]) / 100)
        else:
            n = int(spec)
        return max(1, min(workers, n))


@dataclass(frozen=True)
class PkiSettings:
    key_type: str = "ecdsa-p256"  # ecdsa-p256 | rsa-2048 | rsa-4096
    ca_days: int = 3650
    leaf_days: int = 365


@dataclass(frozen=True)
class KubeletSettings:
    max_pods: int = 110
    extra_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Cluster:
    name: str
    kubernetes_version: KubeVersion
    network: Network
    endpoint: Endpoint
    etcd: EtcdSpec
    ssh: SshSettings  # cluster-wide defaults; each Host carries its merged settings
    packages: PackageSource
    upgrade: UpgradePolicy
    pki: PkiSettings
    kubelet: KubeletSettings
    hosts: tuple[Host, ...]
    allow_workloads_on_control_planes: bool = False
    source: Path = Path("inventory.yaml")  # the inventory file this came from (absolute)
    parallelism: int = 30  # hosts reached at once
    images: ImageSettings = field(default_factory=ImageSettings)

    # --- selectors -----------------------------------------------------------------------------
    def with_role(self, role: Role) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if role in h.roles)

    @property
    def control_planes(self) -> tuple[Host, ...]:
        return self.with_role(Role.CONTROL_PLANE)

    @property
    def workers(self) -> tuple[Host, ...]:
        """Hosts that run workloads and are not control planes."""
        return tuple(h for h in self.hosts if h.is_worker and not h.is_control_plane)

    @property
    def nodes(self) -> tuple[Host, ...]:
        """Hosts that become Kubernetes nodes (control planes and workers)."""
        return tuple(h for h in self.hosts if h.is_control_plane or h.is_worker)

    @property
    def load_balancers(self) -> tuple[Host, ...]:
        return self.with_role(Role.LOAD_BALANCER)

    @property
    def etcd_members(self) -> tuple[Host, ...]:
        """Hosts that run an etcd member: dedicated etcd hosts, or control planes when stacked."""
        if self.etcd.topology is EtcdTopology.STACKED:
            return self.control_planes
        return self.with_role(Role.ETCD)

    @property
    def first_control_plane(self) -> Host:
        return self.control_planes[0]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def select(self, names: Iterable[str] | None) -> tuple[Host, ...]:
        """Hosts by name, in inventory order; None means all."""
        if names is None:
            return self.hosts
        wanted = set(names)
        return tuple(h for h in self.hosts if h.name in wanted)

    # --- local state -----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """``.kubeforge/<cluster>/`` beside the inventory: pki/, backups/, runs/, admin.conf."""
        return self.source.parent / ".kubeforge" / self.name

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def is_ha(self) -> bool:
        return len(self.control_planes) > 1
