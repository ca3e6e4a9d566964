"""BackupEtcd: a verified etcd snapshot before each hop touches anything. The step fails (and the
upgrade stops) when the snapshot cannot be taken or does not verify."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import LocalStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.upgrade.context import UpgradeContext


class BackupEtcd:
    name = "BackupEtcd"
    title = "Back up etcd"
    strategy = serial()

    def title_for(self, ctx: UpgradeContext) -> str:
        return f"Back up etcd before the upgrade to {ctx.target}{ctx.hop_note}"

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        if ctx.all_converged():
            return PhasePlan.of(self, (), title=self.title_for(ctx), reason_if_empty=f"every node already runs {ctx.target}")
        if ctx.backup is None:
            return PhasePlan.of(self, (), title=self.title_for(ctx), reason_if_empty=ctx.backup_unavailable)
        step = LocalStep(f"Take and verify an etcd snapshot before {ctx.target}", ctx.backup, key=ctx.key("etcd-backup"),
                         reaches="a healthy etcd member: the snapshot streams to this machine")
        return PhasePlan.of(self, [(step.host, [step])], title=self.title_for(ctx))
