"""Factory-built clusters the golden tests and render tests share, with fixed fake secrets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kubeforge.model import (
    Cluster,
    EndpointMode,
    EtcdTopology,
    KubeletSettings,
    PackageSource,
    PackageSourceKind,
    Secret,
    Taint,
)
from tests.factories import make_cluster

GOLDEN_DIR = Path(__file__).parent
# Obviously fake values in kubeadm's token format, so goldens never hold a real secret.
FAKE_TOKEN = "abcdef.0123456789abcdef"
FAKE_CERT_KEY = "0f" * 32
FAKE_CA_HASH = "sha256:" + "ab" * 32
FAKE_REGISTRY_PASSWORD = "not-a-real-registry-password"


@dataclass(frozen=True)
class FakeSecrets:
    bootstrap_token: Secret = Secret(FAKE_TOKEN)
    certificate_key: Secret = Secret(FAKE_CERT_KEY)


def external_kube_vip() -> Cluster:
    """3 dedicated etcd, 3 control planes behind kube-vip, 2 workers, packages from a mirror."""
    return make_cluster(name="ext-vip")


def stacked_haproxy() -> Cluster:
    """Stacked etcd, 3 control planes behind 2 haproxy/keepalived balancers, upstream packages."""
    c = make_cluster(
        name="stacked-lb", topology=EtcdTopology.STACKED, n_lb=2, endpoint_mode=EndpointMode.HAPROXY
    )
    return dataclasses.replace(c, packages=PackageSource(kind=PackageSourceKind.UPSTREAM))


def single_node() -> Cluster:
    """One control plane that also runs workloads, no endpoint balancer, an offline bundle."""
    c = make_cluster(name="single", topology=EtcdTopology.STACKED, n_cp=1, n_workers=0)
    return dataclasses.replace(
        c,
        allow_workloads_on_control_planes=True,
        packages=PackageSource(kind=PackageSourceKind.OFFLINE, bundle_dir=Path("/srv/bundle")),
    )


def _with_worker_extras(c: Cluster) -> Cluster:
    worker = c.workers[0]
    worker = dataclasses.replace(
        worker,
        labels={"node.kubernetes.io/pool": "gpu", "team": "ml"},
        taints=(Taint("dedicated", "gpu", "NoSchedule"),),
        internal_address="10.0.0.33",
    )
    hosts = tuple(worker if h.name == worker.name else h for h in c.hosts)
    return dataclasses.replace(
        c, hosts=hosts, kubelet=KubeletSettings(max_pods=64, extra_args=(("v", "2"),))
    )


def v1beta4_extras() -> Cluster:
    """Worker labels, taints and kubelet extra args on 1.34: extraArgs are name/value lists (v1beta4)."""
    c = make_cluster(name="new", version="1.34.2", topology=EtcdTopology.STACKED, n_cp=1, n_workers=1)
    return _with_worker_extras(c)


CASES: dict[str, Callable[[], Cluster]] = {
    "external-kube-vip": external_kube_vip,
    "stacked-haproxy": stacked_haproxy,
    "single-node": single_node,
    "v1beta4-extras": v1beta4_extras,
}
