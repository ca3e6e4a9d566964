"""VerifyVersions: the hop ends when every node of the inventory is Ready and reports the target."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import serial
from kubeforge.plan.upgrade.commands import every_node_at
from kubeforge.plan.upgrade.context import UpgradeContext


class VerifyVersions:
    name = "VerifyVersions"
    title = "Verify versions"
    strategy = serial()

    def title_for(self, ctx: UpgradeContext) -> str:
        return f"Verify every node is Ready on {ctx.target}{ctx.hop_note}"

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        if ctx.all_converged():
            return PhasePlan.of(self, (), title=self.title_for(ctx), reason_if_empty=f"every node reported {ctx.target} and Ready before the run")
        nodes = [h.name for h in ctx.cluster.nodes]
        gate = every_node_at(ctx.first.name, nodes, ctx.target, ctx.cluster.upgrade.node_ready_timeout_s, key=ctx.key("verify"))
        return PhasePlan.of(self, [(gate.host, [gate])], title=self.title_for(ctx))
