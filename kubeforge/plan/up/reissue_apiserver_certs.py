"""ReissueApiserverCerts: a running control plane whose API server certificate does not cover the
inventory's names (a new extraSANs entry, endpoint address, or its own new address) gets a new one
from kubeadm, one control plane at a time, each gated on its API answering (kubeforge.plan.certs.sans).

Before ConfigureEndpoint: a new endpoint address must be in the certificates before the endpoint
moves there and WaitEndpoint asks through it. The certificates on the hosts were read before planning
(``UpContext.apiserver_sans``); a control plane not yet joined gets its certificate from its join."""

from __future__ import annotations

from kubeforge.plan.certs.sans import missing_names, reissue_lane
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import rolling
from kubeforge.plan.up.context import UpContext
from kubeforge.render.context import cluster_context
from kubeforge.render.kubeadm import render_apiserver_certs


class ReissueApiserverCerts:
    name = "ReissueApiserverCerts"
    title = "Re-issue API server certificates for new names (one control plane at a time)"
    strategy = rolling()

    def plan(self, ctx: UpContext) -> PhasePlan:
        if not ctx.apiserver_sans:
            return PhasePlan.noop(self, "no control plane runs an API server yet: kubeadm issues its certificate "
                                        "with the inventory's names")
        cc = None
        lanes: list[tuple[str, list]] = []
        for host in ctx.cluster.control_planes:
            have = ctx.apiserver_sans.get(host.name)
            if have is None:
                continue
            missing = missing_names(ctx.cluster, host, have)
            if not missing:
                continue
            cc = cc or cluster_context(ctx.cluster)
            lanes.append((host.name, reissue_lane(ctx.cluster, host, render_apiserver_certs(cc, host), missing,
                                                  ctx.gate_timeout_s, upload=not lanes)))
        return PhasePlan.of(self, lanes, reason_if_empty="every running API server's certificate covers the inventory's names")
