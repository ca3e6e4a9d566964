"""ConfigureEndpoint: how the API is reached at the inventory's endpoint — haproxy + keepalived on
the load-balancer hosts, or the kube-vip static pod manifest on control planes. External balancers and
single control planes need nothing from kubeforge."""

from __future__ import annotations

from kubeforge.model import EndpointMode, Host
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts, restart_when_changed
from kubeforge.render.endpoint import BALANCER_PATHS, HAPROXY_PATH, KEEPALIVED_INPUTS, KUBE_VIP_PATH


class ConfigureEndpoint:
    name = "ConfigureEndpoint"
    title = "Configure the API endpoint"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        mode = ctx.cluster.endpoint.mode
        if mode is EndpointMode.EXTERNAL:
            return PhasePlan.noop(self, f"the endpoint {ctx.cluster.endpoint.host_port} is an external balancer")
        if mode is EndpointMode.NONE:
            return PhasePlan.noop(self, f"one control plane: the endpoint is {ctx.first.name} itself")
        if mode is EndpointMode.KUBE_VIP:
            lanes = [(h.name, puts(h, ctx.pending(h, ctx.files_where(h, (KUBE_VIP_PATH,))))) for h in ctx.cluster.control_planes]
            return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                                reason_if_empty="the kube-vip manifest is in place on every control plane")
        lanes = [(h.name, self._balancer(ctx, h)) for h in ctx.cluster.load_balancers]
        return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="haproxy and keepalived run with their configuration")

    def _balancer(self, ctx: UpContext, host: Host) -> list:
        files = ctx.pending(host, ctx.files_where(host, BALANCER_PATHS))
        steps: list = puts(host, files)
        f = ctx.facts.get(host.name)
        for unit, inputs in (("haproxy", [HAPROXY_PATH]), ("keepalived", list(KEEPALIVED_INPUTS))):
            if files or f is None or not f.units.is_active(unit) or not ctx.prepared(host):
                # reload, not restart, when running: the balancers are changed in parallel, and
                # restarting both haproxys at once would drop every connection through the VIP
                # (kubectl watches included) and refuse new ones; a keepalived restart on the holder
                # would move the VIP away and back
                steps.append(restart_when_changed(host, unit, inputs, f"Start {unit} with its configuration", reload=True))
        return steps
