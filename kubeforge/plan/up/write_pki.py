"""WritePki: the cluster's certificates and keys (from the local PKI store) on control planes and
dedicated etcd members, in kubeadm's layout. After packages: etcd's keys belong to the etcd user."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts

PKI_SOURCE = "pki"


class WritePki:
    name = "WritePki"
    title = "Write certificates and keys"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        lanes = []
        for host in ctx.cluster.hosts:
            files = [f for f in ctx.files_where(host) if f.source == PKI_SOURCE]
            lanes.append((host.name, puts(host, ctx.pending(host, files))))
        return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="every certificate and key is in place")
