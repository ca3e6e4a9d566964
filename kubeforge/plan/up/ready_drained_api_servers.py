"""ReadyDrainedApiServers: an API server an interrupted run left drained on a haproxy balancer is
re-enabled before anything else restarts one (kubeforge.plan.endpoint.drain; the markers were read
before planning, ``UpContext.drained_backends``)."""

from __future__ import annotations

from kubeforge.plan.endpoint.drain import ready_drained_phase
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext


class ReadyDrainedApiServers:
    name = "ReadyDrainedApiServers"
    title = "Re-enable API servers an interrupted run left drained on haproxy"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        return ready_drained_phase(ctx.cluster, ctx.drained_backends, name=self.name)
