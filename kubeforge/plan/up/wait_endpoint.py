"""WaitEndpoint: before any node joins, the API must answer at the inventory's endpoint itself, not
only on the first control plane. Behind haproxy that takes a few health checks after `kubeadm init`
(the balancers marked every backend down while no API server ran); a join sent earlier meets a
balancer with no server to give it. kube-vip likewise needs its VIP taken first, and an external
balancer that does not forward yet fails here, naming the endpoint, rather than in a join.

The probe asks with ``--server`` so kubectl goes to the endpoint only; admin.conf already names the
endpoint, but the explicit flag keeps the gate honest whatever kubeconfig kubeadm wrote."""

from __future__ import annotations

from kubeforge.model import EndpointMode
from kubeforge.plan.kubectl import readyz_through
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext
from kubeforge.render.endpoint import BALANCER_PATHS, KUBE_VIP_PATH


class WaitEndpoint:
    name = "WaitEndpoint"
    title = "Wait for the API at the endpoint"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        endpoint = ctx.cluster.endpoint
        if endpoint.mode is EndpointMode.NONE:
            # InitFirstControlPlane's gate already waited for the only API server, which is the endpoint
            return PhasePlan.noop(self, f"one control plane: the endpoint is {ctx.first.name} itself")
        waiting = [h.name for h in ctx.cluster.nodes if h.name != ctx.first.name and ctx.needs_join(h)]
        if not waiting:
            return PhasePlan.noop(self, "no node is waiting to join")
        if ctx.state.initialized and not self._endpoint_changing(ctx):
            return PhasePlan.noop(self, f"the API has been answering at {endpoint.host_port} and its balancer is unchanged")
        host = ctx.first
        probe = readyz_through(endpoint.url)
        gate = GateStep(host.name, probe, f"Wait for the API at {endpoint.host_port}",
                        what=f"the API answering through the endpoint {endpoint.host_port} ({endpoint.mode.value})",
                        timeout_s=ctx.gate_timeout_s, interval_s=1.0)
        return PhasePlan.of(self, [(host.name, [gate])])

    @staticmethod
    def _endpoint_changing(ctx: UpContext) -> bool:
        """This run writes the balancers' or kube-vip's files: the endpoint may be down a moment."""
        mode = ctx.cluster.endpoint.mode
        paths: tuple[str, ...]
        if mode is EndpointMode.HAPROXY:
            hosts, paths = ctx.cluster.load_balancers, BALANCER_PATHS
        elif mode is EndpointMode.KUBE_VIP:
            hosts, paths = ctx.cluster.control_planes, (KUBE_VIP_PATH,)
        else:
            return False
        return any(ctx.pending(h, ctx.files_where(h, paths)) for h in hosts)
