"""Reaching hosts: the Transport protocol, SSH and local implementations, bounded fan-out.

``SshTransport`` (and with it paramiko, ~0.3 s to import) loads only when first used.
"""

from kubeforge.transport.base import Command, GetResult, PutResult, RunResult, Transport  # noqa: F401
from kubeforge.transport.local import LocalTransport  # noqa: F401
from kubeforge.transport.policy import BaseTransport, CommandTimeout, NotReached  # noqa: F401


def __getattr__(name: str):
    if name == "SshTransport":
        from kubeforge.transport.ssh import SshTransport

        return SshTransport
    if name in ("TransportPool", "fanout", "FanoutResult", "HostOutcome"):
        from kubeforge.transport import pool

        return getattr(pool, name)
    raise AttributeError(name)
