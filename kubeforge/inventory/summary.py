"""A one-line description of a loaded cluster, for ``kubeforge validate`` and run headers."""

from __future__ import annotations

from kubeforge.model import Cluster, EndpointMode, EtcdTopology, Role
from kubeforge.model.versions import kubeadm_etcd


def summary(cluster: Cluster) -> str:
    """``prod-ha: Kubernetes 1.34.2; 3 control-plane, 3 etcd, 3 worker; etcd external (3 members); endpoint kube-vip 192.168.10.100:6443``"""
    counts = ", ".join(f"{len(cluster.with_role(r))} {r}" for r in Role if cluster.with_role(r))
    members = len(cluster.etcd_members)
    ep = cluster.endpoint
    endpoint = f"{ep.host_port} (no balancer)" if ep.mode is EndpointMode.NONE else f"{ep.mode} {ep.host_port}"
    plural = "s" if members != 1 else ""
    if cluster.etcd.topology is EtcdTopology.STACKED:
        # kubeadm picks the stacked etcd (its image for the minor), not the inventory's etcd.version
        v = cluster.kubernetes_version
        etcd = f"etcd stacked, {kubeadm_etcd(v)} from kubeadm {v.minor_str} ({members} member{plural})"
    else:
        etcd = f"etcd external {cluster.etcd.version} ({members} member{plural})"
    return f"{cluster.name}: Kubernetes {cluster.kubernetes_version}; {counts}; {etcd}; endpoint {endpoint}"
