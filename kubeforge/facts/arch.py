"""The machine architecture (``uname -m``) of hosts, for picking release archives. The full host
facts hold it too; this is the one-line read for workflows that need nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from kubeforge.model import Host
from kubeforge.transport.base import Command

ARCH_COMMAND = Command(argv=["uname", "-m"], timeout=30, description="machine architecture")


def read_machine_arch(pool, hosts: Sequence[Host]):
    """``uname -m`` of every host, in parallel: a FanoutResult of the stripped answer per host."""
    return pool.fanout(hosts, lambda t: t.run(ARCH_COMMAND).stdout.strip())
