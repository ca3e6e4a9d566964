"""kubectl as the cluster's admin, on a control plane (sudo: admin.conf is 0600 root): the commands
more than one plan sends, written once. The admin kubectl itself is model.kubeadm_paths.KUBECTL."""

from __future__ import annotations

from shlex import quote as q

from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.transport.base import Command


def kubectl(args: str, *, timeout: float = 60.0) -> Command:
    return Command(script=f"{KUBECTL} {args}", sudo=True, timeout=timeout)


def delete_node(name: str, *, timeout: float = 300.0) -> Command:
    """The Node object gone (already gone: fine)."""
    return Command(script=f"{KUBECTL} delete node {q(name)} --ignore-not-found", sudo=True, timeout=timeout)


def readyz_through(url: str) -> Command:
    """The API answering /readyz at ``url`` (the endpoint, not the local API server)."""
    return Command(script=f"{KUBECTL} --server {q(url)} get --raw /readyz >/dev/null", sudo=True, timeout=30)


def node_ready(node: str) -> str:
    """Shell: true once the Node reports Ready (each try waits 5 s at most; the gate repeats it)."""
    return f"{KUBECTL} wait --for=condition=Ready node/{q(node)} --timeout=5s >/dev/null"
