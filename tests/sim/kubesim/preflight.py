"""kubeadm init/join preflight checks beyond the node's own (kubeadm.py `_node_checks`): ports in use, static
Pod manifests and stacked etcd data left behind, IP forwarding off. Names and wording are kubeadm's
(cmd/kubeadm/app/preflight/checks.go: PortOpenCheck, FileAvailableCheck, DirAvailableCheck,
FileContentCheck), each a `[ERROR Name]` that `--ignore-preflight-errors` can silence.

Ports are checked as kubeadm does, by trying to listen on them, only on a real machine: the in-process
machines of the unit tests share one network namespace (their API servers all listen on one port).
"""

from __future__ import annotations

import errno
import os
import socket

from . import etcdpod, files, host

API_PORT = 6443
CONTROL_PLANE_PORTS = (10259, 10257)  # kube-scheduler, kube-controller-manager (kubeadm's constants)
KUBELET_PORT = 10250
ETCD_PORTS = (2379, 2380)
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"

Check = tuple[str, str | None]


def port_in_use(port: int) -> bool:
    """kubeadm's PortOpenCheck: net.Listen("tcp", ":port") fails. Go's listeners set SO_REUSEADDR, so
    connections of a stopped server still in TIME_WAIT do not count; a listening socket does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            return e.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def port_checks(ports) -> list[Check]:
    return [(f"Port-{p}", f"Port {p} is in use" if port_in_use(p) else None) for p in ports]


def _file_available(p: str) -> Check:
    name = "FileAvailable-" + p.replace("/", "-")
    return name, f"{p} already exists" if host.exists(p) else None


def _dir_available(p: str) -> Check:
    name = "DirAvailable-" + p.replace("/", "-")
    try:
        empty = not host.exists(p) or not os.listdir(host.path(p))
    except OSError:
        empty = True
    return name, None if empty else f"{p} is not empty"


def ip_forward() -> Check:
    name = "FileContent-" + IP_FORWARD.replace("/", "-")
    if not host.exists(IP_FORWARD):
        return name, f"{IP_FORWARD} does not exist"
    return name, None if host.read(IP_FORWARD).strip() == "1" else f"{IP_FORWARD} contents are not set to 1"


def control_plane_checks(stacked_etcd: bool, data_dir: str = etcdpod.DATA_DIR, *,
                         apiserver_manifest: bool = True) -> list[Check]:
    """What `kubeadm init` and `kubeadm join --control-plane` check before they write anything
    (``apiserver_manifest``: False where the caller checks that file already)."""
    ports = (API_PORT, *CONTROL_PLANE_PORTS, KUBELET_PORT, *(ETCD_PORTS if stacked_etcd else ()))
    checks = [] if host.in_test_root() else port_checks(ports)
    checks += [_file_available(f"{files.MANIFESTS}/{c}.yaml")
               for c in (COMPONENTS if apiserver_manifest else COMPONENTS[1:])]
    if stacked_etcd:
        checks.append(_file_available(f"{files.MANIFESTS}/etcd.yaml"))
        checks.append(_dir_available(data_dir))
    checks.append(ip_forward())
    return checks


def worker_checks() -> list[Check]:
    """What a worker's `kubeadm join` checks besides kubelet.conf."""
    return ([] if host.in_test_root() else port_checks((KUBELET_PORT,))) + [ip_forward()]
