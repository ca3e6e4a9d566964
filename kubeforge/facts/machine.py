"""Two one-line reads of a single machine, for `node replace` deciding whether the inventory's
address answers yet and whether the machine there already joined the cluster."""

from __future__ import annotations

from kubeforge.model.kubeadm_paths import KUBELET_CONF
from kubeforge.transport.base import Command, Transport

REACH = Command(argv=["true"], timeout=30)
JOINED = Command(argv=["test", "-f", KUBELET_CONF], sudo=True, timeout=30, check=False)


def reach(transport: Transport) -> None:
    """Connect and run nothing: raises TransportError (HostKeyError for a refused key) when the
    machine does not answer."""
    transport.run(REACH)


def joined(transport: Transport) -> bool:
    """The machine holds kubelet.conf: it joined a cluster."""
    return transport.run(JOINED).ok
