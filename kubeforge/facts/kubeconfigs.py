"""The kubeconfigs kubeadm wrote on a node, as far as a rotation of the cluster CA must know them to
write them again: each one's server, cluster, user and context names and whether its client
certificate is a file (the kubelet's rotating ``kubelet-client-current.pem``) — never the embedded
data (the probe prints no ``*-data`` line, so no key travels); whether the kubelet keeps its client
certificate in its rotating store; whether the node has the cluster CA file (set up)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubeforge.model import Cluster
from kubeforge.model.kubeadm_paths import KUBE_PKI
from kubeforge.transport.base import Command

KUBECONFIG_DIR = "/etc/kubernetes"
# every kubeconfig kubeadm writes with a client certificate from the cluster CA (kubelet.conf on every node)
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")
KUBELET_PKI = "/var/lib/kubelet/pki"
KUBELET_CURRENT = f"{KUBELET_PKI}/kubelet-client-current.pem"
CLUSTER_CA = f"{KUBE_PKI}/ca.crt"
FIELDS = ("server", "cluster", "user", "current-context", "client-certificate", "client-key")


@dataclass(frozen=True)
class Kubeconfig:
    """One kubeconfig's names (kubeadm's layout: one cluster, one user, one context)."""

    server: str
    cluster: str
    user: str
    context: str
    client_certificate: str = ""  # a file, when the client certificate is not embedded
    client_key: str = ""


@dataclass(frozen=True)
class NodeKubeconfigs:
    host: str
    confs: Mapping[str, Kubeconfig] = field(default_factory=dict)  # by file name (admin.conf, ...)
    kubelet_pem: bool = False  # the kubelet's rotating store holds its client certificate
    has_ca: bool = False  # /etc/kubernetes/pki/ca.crt is there


def probe_command() -> Command:
    names = " ".join(KUBECONFIGS)
    keys = "|".join(FIELDS)
    script = "\n".join([
        f"for f in {names}; do",
        f'  p={KUBECONFIG_DIR}/"$f"',
        '  [ -f "$p" ] || continue',
        '  echo "conf $f"',
        f"  sed -n -E 's/^[[:space:]]*(- )?({keys}):[[:space:]]+([^[:space:]].*)$/\\2 \\3/p' \"$p\" "
        '| while IFS= read -r line; do echo "field $f $line"; done',
        "done",
        f"[ ! -e {shlex.quote(KUBELET_CURRENT)} ] || echo pem",
        f"[ ! -f {shlex.quote(CLUSTER_CA)} ] || echo ca",
        "echo @@end",
    ])
    return Command(script=script, sudo=True, timeout=60, description="read the kubeconfigs' names on this host")


def parse(host: str, stdout: str) -> NodeKubeconfigs:
    lines = stdout.splitlines()
    if "@@end" not in lines:
        raise ValueError(f"{host}: the kubeconfig probe's answer is cut short")
    fields: dict[str, dict[str, str]] = {}
    pem = has_ca = False
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "conf":
            fields.setdefault(rest.strip(), {})
        elif kind == "field":
            conf, _, kv = rest.partition(" ")
            key, _, value = kv.partition(" ")
            fields.setdefault(conf, {}).setdefault(key, value.strip().strip("\"'"))
        elif kind == "pem":
            pem = True
        elif kind == "ca":
            has_ca = True
    confs = {}
    for conf, f in fields.items():
        if conf not in KUBECONFIGS or not f.get("server"):
            continue
        cluster, user = f.get("cluster", "kubernetes"), f.get("user", "")
        confs[conf] = Kubeconfig(server=f["server"], cluster=cluster, user=user,
                                 context=f.get("current-context", f"{user}@{cluster}"),
                                 client_certificate=f.get("client-certificate", ""),
                                 client_key=f.get("client-key", ""))
    return NodeKubeconfigs(host, confs, pem, has_ca)


def read_kubeconfigs(cluster: Cluster, pool, hosts) -> tuple[dict[str, NodeKubeconfigs], list[str]]:
    """``({host: its kubeconfigs}, [unreachable "host: why"])``, read in parallel."""
    from kubeforge.facts.host_certs import read_each

    return read_each(pool, hosts, probe_command(), parse, "the kubeconfigs")
