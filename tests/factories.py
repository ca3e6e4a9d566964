"""Build Cluster models directly in tests (no inventory file needed)."""

from __future__ import annotations

from pathlib import Path

from kubeforge.model import (
    BackupSettings,
    Cluster,
    CniSpec,
    Endpoint,
    EndpointMode,
    EtcdSpec,
    EtcdTopology,
    Host,
    KubeletSettings,
    Network,
    PackageSource,
    PackageSourceKind,
    PkiSettings,
    Role,
    SshSettings,
    UpgradePolicy,
)
from kubeforge.model.versions import parse_etcd, parse_kube


def make_host(name: str, address: str, *roles: Role, ssh: SshSettings | None = None, **kw) -> Host:
    return Host(
        name=name,
        address=address,
        internal_address=kw.pop("internal_address", address),
        roles=frozenset(roles),
        ssh=ssh or SshSettings(user="kube"),
        **kw,
    )


def make_cluster(
    tmp_path: Path | None = None,
    *,
    name: str = "test",
    version: str = "1.34.2",
    topology: EtcdTopology = EtcdTopology.EXTERNAL,
    n_etcd: int = 3,
    n_cp: int = 3,
    n_workers: int = 2,
    n_lb: int = 0,
    endpoint_mode: EndpointMode | None = None,
    etcd_version: str = "3.5.21",
    subnet: str = "10.77.4",
) -> Cluster:
    source = (tmp_path or Path("/tmp/kubeforge-test")) / "inventory.yaml"
    hosts: list[Host] = []
    ip = 10
    if topology is EtcdTopology.EXTERNAL:
        for i in range(1, n_etcd + 1):
            ip += 1
            hosts.append(make_host(f"etcd-{i}", f"{subnet}.{ip}", Role.ETCD))
    for i in range(1, n_lb + 1):
        ip += 1
        hosts.append(make_host(f"lb-{i}", f"{subnet}.{ip}", Role.LOAD_BALANCER))
    for i in range(1, n_cp + 1):
        ip += 1
        hosts.append(make_host(f"cp-{i}", f"{subnet}.{ip}", Role.CONTROL_PLANE))
    for i in range(1, n_workers + 1):
        ip += 1
        hosts.append(make_host(f"worker-{i}", f"{subnet}.{ip}", Role.WORKER))
    if endpoint_mode is None:
        endpoint_mode = EndpointMode.KUBE_VIP if n_cp > 1 else EndpointMode.NONE
    endpoint_host = f"{subnet}.100" if endpoint_mode is not EndpointMode.NONE else hosts[-1 - n_workers].address
    if endpoint_mode is EndpointMode.NONE:
        endpoint_host = next(h.address for h in hosts if h.is_control_plane)
    return Cluster(
        name=name,
        kubernetes_version=parse_kube(version),
        network=Network(cni=CniSpec(manifest=None)),
        endpoint=Endpoint(host=endpoint_host, port=6443, mode=endpoint_mode, interface="host0"),
        etcd=EtcdSpec(
            topology=topology,
            version=parse_etcd(etcd_version),
            backup=BackupSettings(directory=source.parent / ".kubeforge" / name / "backups"),
        ),
        ssh=SshSettings(user="kube"),
        packages=PackageSource(kind=PackageSourceKind.MIRROR, mirror_url=f"http://{subnet}.1:8080"),
        upgrade=UpgradePolicy(),
        pki=PkiSettings(),
        kubelet=KubeletSettings(),
        hosts=tuple(hosts),
        source=source,
    )
