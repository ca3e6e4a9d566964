"""etcdctl invocations as data: which certificates, which endpoints, which tool.

Commands run on an etcd member (the operator's machine needs no etcd tools). The client
certificate is the healthcheck-client one kubeforge (external) or kubeadm (stacked) placed there.

Every request kubeforge sends is listed in ``REQUESTS`` with whether etcd proposes it as a raft log
entry and since which minor etcd knows it. A raft entry is applied by *every* member, so one newer
than the oldest member's minor makes that member panic on apply (``panic: not implemented``) and
crash-loop on every restart. ``etcdctl_argv`` refuses such a request unless the caller says the
cluster's lowest minor allows it (see ``plan.etcd.upgrade_checks.ClusterVersions``).

It sits in the facts layer, the lowest that builds commands, because the read-only probes (etcd
status, versions, auth) build their etcdctl lines here just as the plans' steps do.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from kubeforge.model import Cluster, EtcdTopology, Host
from kubeforge.model.kubeadm_paths import ETCD_PKI, KUBE_PKI
from kubeforge.model.versions import etcd_minors
from kubeforge.transport.base import Command

# The oldest minor kubeforge runs etcd at: what a cluster whose lowest member is unknown is taken to be.
OLDEST_MINOR: tuple[int, int] = min(etcd_minors())  # known minors, upgrade-from ones included


@dataclass(frozen=True)
class EtcdRequest:
    """One request kubeforge sends, and what etcd does with it.

    ``path``: "entry" (proposed as an InternalRaftRequest log entry, applied by every member),
    "conf-change" (a raft membership change, applied by every member), "read-index" (a linearizable
    read: raft confirms leadership, nothing is appended to the log), "message" (a raft message that
    appends nothing: leadership transfer), "local" (answered by the member asked), "offline" (a file,
    no server at all). ``since``: the first etcd minor that has it.
    """

    words: tuple[str, ...]
    path: str
    since: tuple[int, int]
    rpc: str

    @property
    def applied_by_every_member(self) -> bool:
        return self.path in ("entry", "conf-change")


# Sources: etcd's server/etcdserver/v3_server.go (which RPCs call raftRequest / processInternalRaftRequest
# vs linearizableReadNotify), its apply code (applierV3backend.Apply: `default: panic("not
# implemented")` in 3.4), api/etcdserverpb/raft_internal.proto (the union of entries), and the
# CHANGELOG-3.4/3.5 (learners and MemberPromote 3.4; AuthStatus 3.5). docs/etcd.md has the table.
REQUESTS: dict[tuple[str, ...], EtcdRequest] = {r.words: r for r in (
    EtcdRequest(("endpoint", "status"), "local", (3, 0), "Maintenance.Status"),
    # etcdctl's health check: a linearizable Get of "health", then (etcdctl 3.4+) AlarmList
    EtcdRequest(("endpoint", "health"), "entry", (3, 0), "KV.Range (linearizable) + Maintenance.Alarm GET"),
    EtcdRequest(("alarm", "list"), "entry", (3, 0), "Maintenance.Alarm GET"),
    EtcdRequest(("member", "list"), "local", (3, 0), "Cluster.MemberList"),
    EtcdRequest(("member", "add"), "conf-change", (3, 0), "Cluster.MemberAdd (--learner: 3.4)"),
    EtcdRequest(("member", "remove"), "conf-change", (3, 0), "Cluster.MemberRemove"),
    EtcdRequest(("member", "promote"), "conf-change", (3, 4), "Cluster.MemberPromote"),
    EtcdRequest(("move-leader",), "message", (3, 3), "Maintenance.MoveLeader"),
    EtcdRequest(("snapshot", "save"), "local", (3, 0), "Maintenance.Snapshot"),
    EtcdRequest(("user", "list"), "entry", (3, 0), "Auth.UserList"),
    EtcdRequest(("auth", "status"), "entry", (3, 5), "Auth.AuthStatus"),
)}


class UnsafeEtcdRequest(ValueError):
    """A bug of kubeforge's: a request not in REQUESTS, or a raft entry the oldest member cannot apply."""


def request_for(args: tuple[str, ...] | list[str]) -> EtcdRequest:
    for n in (2, 1):
        r = REQUESTS.get(tuple(args[:n]))
        if r is not None:
            return r
    raise UnsafeEtcdRequest(f"etcdctl {' '.join(args[:2])} is not in kubeforge.facts.etcdctl.REQUESTS: add it "
                            "with whether etcd proposes it through raft and since which minor")


def may_send(request: EtcdRequest, lowest_minor: tuple[int, int] | None) -> bool:
    """Whether ``request`` is safe in a cluster whose oldest member (or cluster version) is
    ``lowest_minor`` (None: not known, taken as the oldest kubeforge supports). Only requests every
    member applies matter: one answered by the member asked at worst fails there."""
    if not request.applied_by_every_member:
        return True
    return request.since <= (lowest_minor or OLDEST_MINOR)


@dataclass(frozen=True)
class EtcdTls:
    cacert: str
    cert: str
    key: str


EXTERNAL_TLS = EtcdTls(
    cacert=f"{ETCD_PKI}/ca.crt",
    cert=f"{ETCD_PKI}/healthcheck-client.crt",
    key=f"{ETCD_PKI}/healthcheck-client.key",
)
STACKED_TLS = EtcdTls(
    cacert=f"{KUBE_PKI}/etcd/ca.crt",
    cert=f"{KUBE_PKI}/etcd/healthcheck-client.crt",
    key=f"{KUBE_PKI}/etcd/healthcheck-client.key",
)

# Where kubeforge keeps snapshots on a member while they are taken or restored.
REMOTE_WORK_DIR = "/var/lib/kubeforge/etcd"


def tls_for(cluster: Cluster) -> EtcdTls:
    return STACKED_TLS if cluster.etcd.topology is EtcdTopology.STACKED else EXTERNAL_TLS


def port_open(host: str, port: int, timeout_s: int = 3) -> str:
    """A shell test that succeeds when something accepts a TCP connection on ``host:port`` within
    ``timeout_s`` (bash's /dev/tcp: no tool needed on the host). A stopped etcd fails it at once,
    where etcdctl would retry until its command timeout."""
    return f"timeout {timeout_s} bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null"


def client_url(cluster: Cluster, host: Host) -> str:
    return f"https://{_bracket(host.internal_address)}:{cluster.etcd.client_port}"


def peer_url(cluster: Cluster, host: Host) -> str:
    return f"https://{_bracket(host.internal_address)}:{cluster.etcd.peer_port}"


def initial_cluster(cluster: Cluster, members: tuple[Host, ...] | None = None) -> str:
    members = cluster.etcd_members if members is None else members
    return ",".join(f"{h.name}={peer_url(cluster, h)}" for h in members)


def _bracket(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def etcdctl_argv(cluster: Cluster, endpoints: list[str], *args: str, command_timeout: str = "15s",
                 lowest_minor: tuple[int, int] | None = None) -> list[str]:
    """``command_timeout`` bounds the whole call: snapshot save of a large database needs minutes.
    ``lowest_minor``: the cluster's lowest etcd minor, when the caller has learnt it; a raft entry
    newer than it (or than the oldest supported minor, when not given) is refused here."""
    request = request_for(args)
    if not may_send(request, lowest_minor):
        low = ".".join(map(str, lowest_minor or OLDEST_MINOR))
        raise UnsafeEtcdRequest(f"etcdctl {' '.join(request.words)} is a raft entry etcd {low} members cannot apply "
                                f"(it exists since {'.'.join(map(str, request.since))})")
    tls = tls_for(cluster)
    return [
        "etcdctl",
        f"--endpoints={','.join(endpoints)}",
        f"--cacert={tls.cacert}",
        f"--cert={tls.cert}",
        f"--key={tls.key}",
        "--dial-timeout=3s",
        f"--command-timeout={command_timeout}",
        *args,
    ]


def etcdctl(cluster: Cluster, endpoints: list[str], *args: str, description: str = "", timeout: float = 60) -> Command:
    return Command(
        argv=etcdctl_argv(cluster, endpoints, *args),
        sudo=True,
        env={"ETCDCTL_API": "3"},
        timeout=timeout,
        description=description or "etcdctl " + " ".join(args),
    )


def etcdctl_line(cluster: Cluster, endpoints: list[str], *args: str, command_timeout: str = "15s",
                 lowest_minor: tuple[int, int] | None = None) -> str:
    """The same invocation as one shell-quoted line, for use inside a script."""
    argv = etcdctl_argv(cluster, endpoints, *args, command_timeout=command_timeout, lowest_minor=lowest_minor)
    return "ETCDCTL_API=3 " + " ".join(shlex.quote(a) for a in argv)
