"""RecordApplied: /etc/kubeforge/applied.json on every host rewritten for the hop's version, once
every node is through it, so the next `up` (inventory at the new version) trusts the files the
upgrade wrote and plans nothing. Only when the hop had work (in this run, or in the run it
resumes, which may have stopped before recording): a converged re-run plans nothing."""

from __future__ import annotations

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import PutFileStep
from kubeforge.plan.strategy import parallel
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.render.record import RECORD_PATH


class RecordApplied:
    name = "RecordApplied"
    title = "Record what kubeforge applied"
    strategy = parallel()

    def title_for(self, ctx: UpgradeContext) -> str:
        return ctx.title(self.title)

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        if not ctx.node_files:
            return PhasePlan.of(self, [], title=self.title_for(ctx), reason_if_empty="the files `up` renders at this version were not given")
        if ctx.all_converged() and not ctx.resumes_hop:
            return PhasePlan.of(self, [], title=self.title_for(ctx), reason_if_empty=f"every node already runs {ctx.target}")
        lanes = [(h.name, [PutFileStep(h.name, f, title=self.title, key=ctx.key("record"))
                           for f in ctx.up_files_of(h, (RECORD_PATH,))])
                 for h in ctx.cluster.hosts]
        return PhasePlan.of(self, lanes, title=self.title_for(ctx),
                            strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="no host has a record to write")
