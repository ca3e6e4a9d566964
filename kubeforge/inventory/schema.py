"""The inventory's typed schema (pydantic v2): what each key may hold, before cross-field rules.

Defaults shown here come from the frozen model's own dataclass defaults, so the JSON Schema an
editor sees and the model ``build`` produces can never disagree. Defaults that depend on other
fields (etcd topology, endpoint host, backup directory) are left ``None`` here and decided once in
``kubeforge.inventory.build``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from kubeforge.model import cluster as m

ROLES = ("control-plane", "etcd", "worker", "load-balancer")
ENDPOINT_MODES = ("kube-vip", "haproxy", "external", "none")
TOPOLOGIES = ("external", "stacked")
HOST_KEY_POLICIES = ("strict", "accept-new")
PACKAGE_SOURCES = ("upstream", "mirror", "offline")
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
ENCRYPTIONS = ("none", "keyfile", "passphrase")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

API_VERSION = "kubeforge.io/v1alpha1"
KIND = "Cluster"

Port = int  # range enforced with Field(ge=1, le=65535) where used


def _default(cls: type, name: str) -> Any:
    """A model dataclass field's plain default (single source of truth for defaults)."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).default


def _port(cls: type, name: str, description: str) -> Any:
    return Field(default=_default(cls, name), ge=1, le=65535, description=description)


class _Doc(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,
        populate_by_name=False,
        # editors show titles: use the YAML key, not a title-cased Python name
        field_title_generator=lambda name, info: info.alias or name,
    )


class CniDoc(_Doc):
    name: str = Field(default=_default(m.CniSpec, "name"), description="CNI plugin name (calico, cilium, flannel, custom).")
    manifest: str | None = Field(
        default=None, description="Manifest applied after the first control plane: an https URL or a path relative to the inventory."
    )


class NetworkDoc(_Doc):
    pod_cidr: str = Field(default=_default(m.Network, "pod_cidr"), alias="podCIDR", description="Pod network range.")
    service_cidr: str = Field(default=_default(m.Network, "service_cidr"), alias="serviceCIDR", description="Service range.")
    cluster_domain: str = Field(default=_default(m.Network, "cluster_domain"), alias="clusterDomain")
    cni: CniDoc = Field(default_factory=CniDoc)


class EndpointDoc(_Doc):
    host: str | None = Field(
        default=None, description="DNS name or VIP of the API server. Default with mode none: the control plane's address."
    )
    port: int = _port(m.Endpoint, "port", "API server port on the endpoint.")
    mode: Literal[ENDPOINT_MODES] = Field(  # type: ignore[valid-type]
        default="none",
        description="kube-vip (VIP on the control planes), haproxy (haproxy+keepalived on load-balancer hosts), "
        "external (a balancer kubeforge does not manage), none (single control plane).",
    )
    interface: str | None = Field(default=None, description="Network interface carrying the VIP (kube-vip, keepalived).")
    virtual_router_id: int = Field(
        default=_default(m.Endpoint, "virtual_router_id"), ge=1, le=255, alias="virtualRouterID", description="keepalived VRRP id."
    )
    extra_sans: list[str] = Field(default_factory=list, alias="extraSANs", description="More API server cert SANs.")


class BackupDoc(_Doc):
    directory: str | None = Field(default=None, description="Where snapshots go. Default: <inventory dir>/.kubeforge/<name>/backups.")
    keep: int = Field(default=_default(m.BackupSettings, "keep"), ge=1, description="Snapshots kept.")
    max_age_days: int | None = Field(default=None, ge=1, alias="maxAgeDays", description="Also delete snapshots older than this.")
    encryption: Literal[ENCRYPTIONS] = Field(default="none", description="none, keyfile (keyFile) or passphrase (asked at run time).")  # type: ignore[valid-type]
    key_file: str | None = Field(default=None, alias="keyFile", description="Key for keyfile encryption; never inside the backup directory.")
    include_pki: bool = Field(default=_default(m.BackupSettings, "include_pki"), alias="includePKI")


class EtcdDoc(_Doc):
    topology: Literal[TOPOLOGIES] | None = Field(  # type: ignore[valid-type]
        default=None, description="external (hosts with role etcd) or stacked (on the control planes). Default: external when any host has role etcd."
    )
    version: StrictStr | None = Field(default=None, description="etcd version (X.Y.Z). Default: the latest known 3.5 patch.")
    data_dir: str = Field(default=_default(m.EtcdSpec, "data_dir"), alias="dataDir")
    heartbeat_interval_ms: int = Field(default=_default(m.EtcdSpec, "heartbeat_interval_ms"), ge=10, alias="heartbeatIntervalMs")
    election_timeout_ms: int = Field(default=_default(m.EtcdSpec, "election_timeout_ms"), ge=50, le=50000, alias="electionTimeoutMs")
    quota_backend_bytes: int = Field(default=_default(m.EtcdSpec, "quota_backend_bytes"), ge=0, alias="quotaBackendBytes")
    snapshot_count: int = Field(default=_default(m.EtcdSpec, "snapshot_count"), ge=1, alias="snapshotCount")
    client_port: int = Field(default=_default(m.EtcdSpec, "client_port"), ge=1, le=65535, alias="clientPort")
    peer_port: int = Field(default=_default(m.EtcdSpec, "peer_port"), ge=1, le=65535, alias="peerPort")
    backup: BackupDoc = Field(default_factory=BackupDoc)
    release_url: str | None = Field(
        default=None, alias="releaseURL",
        description="Install etcd from release archives at <releaseURL>/v<V>/etcd-v<V>-linux-<arch>.tar.gz, checked "
        "against <releaseURL>/v<V>/SHA256SUMS (any package source). Default: packages.source upstream uses etcd's "
        "GitHub releases, mirror uses the mirror's Debian packages, offline uses bundleDir.",
    )
    checksums: dict[str, StrictStr] = Field(
        default_factory=dict,
        description="Pinned sha256 of etcd release archives by version ('3.5.16': '<64 hex>'); they take precedence "
        "over SHA256SUMS, and an archive that differs is refused.",
    )


class BastionDoc(_Doc):
    address: str = Field(description="Jump host address.")
    port: int = _port(m.Bastion, "port", "Jump host SSH port.")
    user: str | None = Field(default=None, description="Default: spec.ssh.user.")
    identity_file: str | None = Field(default=None, alias="identityFile")
    host_key: str | None = Field(default=None, alias="hostKey", description="Pinned host key of the bastion ('ssh-ed25519 AAAA...').")


class SshDoc(_Doc):
    user: str = Field(default=_default(m.SshSettings, "user"))
    port: int = _port(m.SshSettings, "port", "SSH port.")
    identity_file: str | None = Field(default=None, alias="identityFile", description="Private key; relative to the inventory, ~ expands.")
    known_hosts: str | None = Field(default=None, alias="knownHosts", description="known_hosts file. Default: ~/.ssh/known_hosts.")
    host_key_policy: Literal[HOST_KEY_POLICIES] = Field(default="strict", alias="hostKeyPolicy")  # type: ignore[valid-type]
    bastion: BastionDoc | None = None
    connect_timeout_seconds: float = Field(default=_default(m.SshSettings, "connect_timeout"), gt=0, alias="connectTimeoutSeconds")
    connect_retries: int = Field(default=_default(m.SshSettings, "connect_retries"), ge=0, alias="connectRetries")
    use_agent: bool = Field(default=_default(m.SshSettings, "use_agent"), alias="useAgent")
    sudo: bool = Field(default=_default(m.SshSettings, "sudo"), description="Use sudo for privileged commands when user is not root.")
    ssh_config: str | None = Field(default=None, alias="sshConfig", description="OpenSSH client config to read HostName, User, Port, "
                                   "IdentityFile and ProxyJump from. Default: ~/.ssh/config; 'none' reads none.")


class HostSshDoc(_Doc):
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = Field(default=None, alias="identityFile")


class PackagesDoc(_Doc):
    source: Literal[PACKAGE_SOURCES] = Field(default="upstream", description="upstream, mirror (mirrorURL) or offline (bundleDir).")  # type: ignore[valid-type]
    mirror_url: str | None = Field(default=None, alias="mirrorURL")
    bundle_dir: str | None = Field(
        default=None, alias="bundleDir",
        description="Directory of .deb files, relative to the inventory; for etcd it holds "
        "etcd-v<V>-linux-<arch>.tar.gz and SHA256SUMS.",
    )
    containerd_package: str = Field(default=_default(m.PackageSource, "containerd_package"), alias="containerdPackage")
    etcd_packages: list[str] = Field(default=list(_default(m.PackageSource, "etcd_packages")), alias="etcdPackages")
    gpg_key_url: str | None = Field(default=None, alias="gpgKeyURL")
    debian_suite: str = Field(default=_default(m.PackageSource, "debian_suite"), alias="debianSuite")
    upstream_url: str = Field(default=_default(m.PackageSource, "upstream_url"), alias="upstreamURL")


class RegistryCredentialDoc(_Doc):
    username: str = Field(description="Registry user name.")
    password_file: str | None = Field(
        default=None, alias="passwordFile",
        description="File holding the password (mode 0600), relative to the inventory. Never the password itself.",
    )
    password_env: str | None = Field(default=None, alias="passwordEnv", description="Environment variable holding the password.")


class ImagesDoc(_Doc):
    repository: str = Field(
        default=_default(m.ImageSettings, "repository"),
        description="kubeadm's imageRepository (host[:port][/path]); the pause, CoreDNS, etcd and kube-vip images follow it.",
    )
    mirrors: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Registry host -> endpoint URLs tried in order before it (containerd hosts.toml).",
    )
    credentials: dict[str, RegistryCredentialDoc] = Field(
        default_factory=dict, description="Registry or mirror host -> basic-auth user and where its password is."
    )
    ca: str | None = Field(default=None, description="CA certificate (PEM) that signs the registries' and mirrors' certificates.")


class UpgradeDoc(_Doc):
    max_unavailable: int | str = Field(
        default=_default(m.UpgradePolicy, "max_unavailable"),
        alias="maxUnavailable",
        description="Workers upgraded at once: a count (2) or a percentage of workers ('25%').",
    )
    drain_timeout_seconds: int = Field(default=_default(m.UpgradePolicy, "drain_timeout_s"), ge=1, alias="drainTimeoutSeconds")
    drain_grace_period_seconds: int = Field(
        default=_default(m.UpgradePolicy, "drain_grace_period_s"), ge=-1, alias="drainGracePeriodSeconds",
        description="-1: each pod's own terminationGracePeriodSeconds.",
    )
    delete_empty_dir_data: bool = Field(default=_default(m.UpgradePolicy, "delete_emptydir_data"), alias="deleteEmptyDirData")
    ignore_daemon_sets: bool = Field(default=_default(m.UpgradePolicy, "ignore_daemonsets"), alias="ignoreDaemonSets")
    leave_cordoned_on_failure: bool = Field(default=_default(m.UpgradePolicy, "leave_cordoned_on_failure"), alias="leaveCordonedOnFailure")
    node_ready_timeout_seconds: int = Field(default=_default(m.UpgradePolicy, "node_ready_timeout_s"), ge=1, alias="nodeReadyTimeoutSeconds")


class PkiDoc(_Doc):
    key_type: Literal[KEY_TYPES] = Field(default=_default(m.PkiSettings, "key_type"), alias="keyType")  # type: ignore[valid-type]
    ca_days: int = Field(default=_default(m.PkiSettings, "ca_days"), ge=1, alias="caDays")
    leaf_days: int = Field(default=_default(m.PkiSettings, "leaf_days"), ge=1, alias="leafDays")


class ExtraArgDoc(_Doc):
    name: str = Field(description="Flag name without leading dashes (max-pods).")
    value: str


class KubeletDoc(_Doc):
    max_pods: int = Field(default=_default(m.KubeletSettings, "max_pods"), ge=1, alias="maxPods")
    extra_args: list[ExtraArgDoc] = Field(default_factory=list, alias="extraArgs")


class TaintDoc(_Doc):
    key: str
    value: str | None = None
    effect: Literal[TAINT_EFFECTS]  # type: ignore[valid-type]


class HostDoc(_Doc):
    name: str = Field(description="Node name: a DNS-1123 subdomain (lowercase).")
    address: str = Field(description="Address kubeforge connects to over SSH.")
    internal_address: str | None = Field(
        default=None, alias="internalAddress", description="IP cluster traffic uses. Default: address (which must then be an IP)."
    )
    roles: list[Literal[ROLES]] = Field(min_length=1, description="control-plane, etcd, worker, load-balancer.")  # type: ignore[valid-type]
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[TaintDoc] = Field(default_factory=list)
    ssh: HostSshDoc | None = Field(default=None, description="Overrides of spec.ssh for this host.")
    host_key: str | None = Field(default=None, alias="hostKey", description="Pinned SSH host key; overrides known_hosts.")


class MetadataDoc(_Doc):
    name: str = Field(description="Cluster name: a DNS-1123 label.")


class SpecDoc(_Doc):
    # strict: YAML reads 1.30 as the number 1.3, which must not become Kubernetes 1.3
    kubernetes_version: StrictStr = Field(alias="kubernetesVersion", description="Kubernetes version X.Y.Z.")
    network: NetworkDoc = Field(default_factory=NetworkDoc, description="Pod and service ranges, cluster domain, CNI.")
    control_plane_endpoint: EndpointDoc = Field(
        default_factory=EndpointDoc, alias="controlPlaneEndpoint", description="Where the API server is reached and how it is served."
    )
    etcd: EtcdDoc = Field(default_factory=EtcdDoc, description="etcd topology, version, tuning and backups.")
    ssh: SshDoc = Field(default_factory=SshDoc, description="How kubeforge reaches every host (per-host ssh overrides these).")
    packages: PackagesDoc = Field(default_factory=PackagesDoc, description="Where Kubernetes, containerd and etcd packages come from.")
    images: ImagesDoc = Field(default_factory=ImagesDoc, description="Where container images come from: repository, mirrors, credentials, CA.")
    upgrade: UpgradeDoc = Field(default_factory=UpgradeDoc, description="How worker upgrades roll: batch size, drain options.")
    pki: PkiDoc = Field(default_factory=PkiDoc, description="Key type and lifetimes of the certificates kubeforge issues.")
    kubelet: KubeletDoc = Field(default_factory=KubeletDoc, description="Kubelet settings for every node.")
    allow_workloads_on_control_planes: bool = Field(
        default=False, alias="allowWorkloadsOnControlPlanes", description="Do not taint control planes NoSchedule."
    )
    parallelism: int = Field(default=_default(m.Cluster, "parallelism"), ge=1, description="Hosts reached at once.")
    hosts: list[HostDoc] = Field(min_length=1, description="The machines, each with its roles.")


class ClusterDoc(_Doc):
    """A kubeforge inventory: one cluster."""

    model_config = ConfigDict(title="kubeforge inventory (kubeforge.io/v1alpha1 Cluster)")

    api_version: Literal[API_VERSION] = Field(alias="apiVersion", description="Always kubeforge.io/v1alpha1.")  # type: ignore[valid-type]
    kind: Literal[KIND] = Field(description="Always Cluster.")  # type: ignore[valid-type]
    metadata: MetadataDoc = Field(description="The cluster's name.")
    spec: SpecDoc = Field(description="The desired cluster.")


# spec sections validated on their own when the whole document fails, so rules can still run on
# the sections that are fine (see loader)
SPEC_SECTIONS: dict[str, tuple[str, Any]] = {
    name: (f.alias or name, f.annotation) for name, f in SpecDoc.model_fields.items() if name != "hosts"
}


def json_schema() -> dict:
    """The inventory's JSON Schema (draft 2020-12), for editors."""
    schema = ClusterDoc.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://kubeforge.io/schemas/v1alpha1/cluster.json", **schema}
