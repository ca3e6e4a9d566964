"""A one-line description of a loaded cluster, for ``kubeforge validate`` and run headers."""

from __future__ import annotations

from kubeforge.model import Cluster, EndpointMode, Role


def summary(cluster: Cluster) -> str:
    """``prod-ha: Kubernetes 1.34.2; 3 control-plane, 3 etcd, 3 worker; etcd external (3 members); endpoint kube-vip 192.168.10.100:6443``"""
    counts = ", ".join(f"{len(cluster.with_role(r))} {r}" for r in Role if cluster.with_role(r))
    members = len(cluster.etcd_members)
    ep = cluster.endpoint
    endpoint = f"{ep.host_port} (no balancer)" if ep.mode is EndpointMode.NONE else f"{ep.mode} {ep.host_port}"
    return (
        f"{cluster.name}: Kubernetes {cluster.kubernetes_version}; {counts}; "
        f"etcd {cluster.etcd.topology} {cluster.etcd.version} ({members} member{'s' if members != 1 else ''}); "
        f"endpoint {endpoint}"
    )
