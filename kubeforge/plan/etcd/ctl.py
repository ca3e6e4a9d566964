"""etcdctl invocations as data: which certificates, which endpoints, which tool.

Commands run on an etcd member (the operator's machine needs no etcd tools). The client
certificate is the healthcheck-client one kubeforge (external) or kubeadm (stacked) placed there.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from kubeforge.model import Cluster, EtcdTopology, Host
from kubeforge.transport.base import Command


@dataclass(frozen=True)
class EtcdTls:
    cacert: str
    cert: str
    key: str


EXTERNAL_TLS = EtcdTls(
    cacert="/etc/etcd/pki/ca.crt",
    cert="/etc/etcd/pki/healthcheck-client.crt",
    key="/etc/etcd/pki/healthcheck-client.key",
)
STACKED_TLS = EtcdTls(
    cacert="/etc/kubernetes/pki/etcd/ca.crt",
    cert="/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    key="/etc/kubernetes/pki/etcd/healthcheck-client.key",
)

# Where kubeforge keeps snapshots on a member while they are taken or restored.
REMOTE_WORK_DIR = "/var/lib/kubeforge/etcd"


def tls_for(cluster: Cluster) -> EtcdTls:
    return STACKED_TLS if cluster.etcd.topology is EtcdTopology.STACKED else EXTERNAL_TLS


def client_url(cluster: Cluster, host: Host) -> str:
    return f"https://{_bracket(host.internal_address)}:{cluster.etcd.client_port}"


def peer_url(cluster: Cluster, host: Host) -> str:
    return f"https://{_bracket(host.internal_address)}:{cluster.etcd.peer_port}"


def initial_cluster(cluster: Cluster, members: tuple[Host, ...] | None = None) -> str:
    members = cluster.etcd_members if members is None else members
    return ",".join(f"{h.name}={peer_url(cluster, h)}" for h in members)


def _bracket(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def etcdctl_argv(cluster: Cluster, endpoints: list[str], *args: str, command_timeout: str = "15s") -> list[str]:
    """``command_timeout`` bounds the whole call: snapshot save of a large database needs minutes."""
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


def etcdctl_line(cluster: Cluster, endpoints: list[str], *args: str, command_timeout: str = "15s") -> str:
    """The same invocation as one shell-quoted line, for use inside a script."""
    argv = etcdctl_argv(cluster, endpoints, *args, command_timeout=command_timeout)
    return "ETCDCTL_API=3 " + " ".join(shlex.quote(a) for a in argv)
