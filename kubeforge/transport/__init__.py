"""Reaching hosts: the Transport protocol, SSH and local implementations, bounded fan-out.

    with TransportPool(cluster) as pool:                       # one SSH connection per host
        result = pool.fanout(cluster.workers, lambda t: t.run(Command(argv=["uname", "-r"])))
        result.raise_for_failures("probe kernels")             # ExecutionFailed(report=result)
        pool.get(cluster.first_control_plane).put("/etc/kubeforge/x.yaml", data, mode=0o600, secret=True)

Every command reaches the host as ``[sudo -n --] [timeout -k 5 T] bash -s`` with the command, its
environment and its stdin on stdin, so nothing (secrets included) shows in the host's process list.
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
