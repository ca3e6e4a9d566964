"""What each role needs from a host: ports, CPUs, memory, disk. One table, read by the checks."""

from __future__ import annotations

from dataclasses import dataclass

from kubeforge.model import Cluster, EndpointMode, Host, Role

GIB = 1024**3
GB = 1000**3

# MemTotal excludes what firmware and the kernel reserve (3-8% on real machines), so a machine
# sold as "2 GB" reports ~1.9 GiB; minimums are compared with this much slack.
MEMORY_SLACK = 0.9


@dataclass(frozen=True)
class Resources:
    cpus: int
    memory_bytes: int
    why: str  # "control plane", for messages


# (hard minimum, recommendation). Control-plane recommendations follow the upstream sizing for
# clusters under 100 nodes; bigger clusters get the next size up.
HARD = {
    Role.CONTROL_PLANE: Resources(2, 2 * GIB, "control plane"),
    Role.ETCD: Resources(2, 2 * GIB, "etcd member"),
    Role.WORKER: Resources(1, 1 * GIB, "worker"),
    Role.LOAD_BALANCER: Resources(1, 512 * 1024**2, "load balancer"),
}
RECOMMENDED = {
    Role.CONTROL_PLANE: Resources(4, 16 * GIB, "control plane (< 100 nodes)"),
    Role.ETCD: Resources(2, 8 * GIB, "etcd member"),
}
RECOMMENDED_LARGE_CP = Resources(8, 32 * GIB, "control plane (>= 100 nodes)")
ETCD_DISK_RECOMMENDED = 20 * GB
NODE_DISK_HARD = 1 * GIB  # on /var/lib: images and pod data; nothing fits below this
NODE_DISK_WARN = 10 * GIB
FSYNC_WARN_MS = 10.0


@dataclass(frozen=True)
class PortNeed:
    port: int
    what: str  # "kube-apiserver"
    process: str  # the program name ss shows (15 chars at most: it is the kernel's comm)
    unit: str | None  # systemd unit that serves it, None for static pods (served via kubelet)
    reached_by: frozenset[Role] = frozenset()  # roles of other hosts that connect to it


_NODES = frozenset({Role.CONTROL_PLANE, Role.WORKER})


def effective_roles(cluster: Cluster, host: Host) -> frozenset[Role]:
    """The host's roles, plus etcd when it runs a stacked member."""
    roles = set(host.roles)
    if host in cluster.etcd_members:
        roles.add(Role.ETCD)
    return frozenset(roles)


def is_node(roles: frozenset[Role]) -> bool:
    return Role.CONTROL_PLANE in roles or Role.WORKER in roles


def required_ports(cluster: Cluster, host: Host) -> tuple[PortNeed, ...]:
    roles = effective_roles(cluster, host)
    needs: dict[int, PortNeed] = {}

    def add(n: PortNeed) -> None:
        needs.setdefault(n.port, n)

    # who connects: nodes and balancers reach the API server, control planes reach kubelets and
    # etcd clients, etcd members reach each other's peer port; the controller-manager, scheduler
    # and kube-proxy ports are health endpoints that only need to be free
    if Role.CONTROL_PLANE in roles:
        add(PortNeed(6443, "kube-apiserver", "kube-apiserver", None, _NODES | {Role.LOAD_BALANCER}))
        add(PortNeed(10250, "kubelet", "kubelet", "kubelet", frozenset({Role.CONTROL_PLANE})))
        add(PortNeed(10257, "kube-controller-manager", "kube-controller", None))
        add(PortNeed(10259, "kube-scheduler", "kube-scheduler", None))
    if Role.ETCD in roles:
        add(PortNeed(cluster.etcd.client_port, "etcd client", "etcd", "etcd", frozenset({Role.CONTROL_PLANE, Role.ETCD})))
        add(PortNeed(cluster.etcd.peer_port, "etcd peer", "etcd", "etcd", frozenset({Role.ETCD})))
    if Role.WORKER in roles:
        add(PortNeed(10250, "kubelet", "kubelet", "kubelet", frozenset({Role.CONTROL_PLANE})))
        add(PortNeed(10256, "kube-proxy", "kube-proxy", None))
    if Role.LOAD_BALANCER in roles and cluster.endpoint.mode is EndpointMode.HAPROXY:
        add(PortNeed(cluster.endpoint.port, "API load balancer (haproxy)", "haproxy", "haproxy", _NODES))
    return tuple(sorted(needs.values(), key=lambda n: n.port))


def peer_ports(cluster: Cluster, host: Host) -> tuple[PortNeed, ...]:
    """Ports of ``host`` that some other host must be able to reach (the probe listens on these)."""
    return tuple(n for n in required_ports(cluster, host) if n.reached_by)


def flows(cluster: Cluster, src: Host, dst: Host) -> tuple[int, ...]:
    """Ports of ``dst`` that ``src`` connects to in a running cluster."""
    if src.name == dst.name:
        return ()
    mine = effective_roles(cluster, src)
    return tuple(n.port for n in peer_ports(cluster, dst) if n.reached_by & mine)


def hard_minimum(cluster: Cluster, host: Host) -> Resources:
    return _combine([HARD[r] for r in effective_roles(cluster, host) if r in HARD])


def recommendation(cluster: Cluster, host: Host) -> Resources | None:
    roles = effective_roles(cluster, host)
    recs = []
    if Role.CONTROL_PLANE in roles:
        recs.append(RECOMMENDED_LARGE_CP if len(cluster.nodes) >= 100 else RECOMMENDED[Role.CONTROL_PLANE])
    if Role.ETCD in roles:
        recs.append(RECOMMENDED[Role.ETCD])
    return _combine(recs) if recs else None


def _combine(items: list[Resources]) -> Resources:
    if not items:
        return Resources(1, 0, "host")
    return Resources(
        max(i.cpus for i in items),
        max(i.memory_bytes for i in items),
        " + ".join(sorted({i.why for i in items})),
    )
