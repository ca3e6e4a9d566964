"""RecordApplied: /etc/kubeforge/applied.json on every host, last, once the host has converged. A
later run trusts it (with the live facts) to plan nothing for files that did not change."""

from __future__ import annotations

import json

from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import PutFileStep
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.render.record import RECORD_PATH


class RecordApplied:
    name = "RecordApplied"
    title = "Record what kubeforge applied"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        lanes = []
        for host in ctx.cluster.hosts:
            record = ctx.file(host, RECORD_PATH)
            f = ctx.facts.get(host.name)
            have = f.applied.record if f is not None else None
            if record is None:
                continue
            if have is not None and have == json.loads(record.content):
                continue
            lanes.append((host.name, [PutFileStep(host.name, record, title="Record what kubeforge applied")]))
        return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="every host's record is up to date")
