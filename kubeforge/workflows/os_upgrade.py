"""`kubeforge os upgrade`: the rolling OS patch run (kubeforge.plan.os_upgrade plans it) through the
run engine: the packages stage is shown and confirmed; the reboot stage is planned from fresh facts
once the packages are in (which packages ask for a reboot is known only then), under the same locks
and journal.

    result = os_upgrade(cluster, pool, options, confirm=..., run_dir=..., log_path=...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import CheckFailed, UsageError
from kubeforge.execute import Events, Report, RunOptions, execute
from kubeforge.facts.cluster import probe_cluster
from kubeforge.facts.os_patch import gather_os_facts
from kubeforge.model import Cluster
from kubeforge.plan.os_upgrade import OsUpgradeInput, plan_packages, plan_reboots, preview
from kubeforge.plan.phase import Plan
from kubeforge.workflows.common import site


@dataclass
class OsUpgradeResult:
    plan: Plan  # the packages stage, as shown and confirmed
    preview: list[dict]  # per host: upgrades, would reboot
    report: Report | None  # None: declined; the last stage's report
    reboot_plan: Plan | None = None  # the reboot stage, once planned


def _selected(cluster: Cluster, names: Sequence[str]):
    if not names:
        return cluster.hosts
    known = {h.name for h in cluster.hosts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"os upgrade: no host named {', '.join(repr(n) for n in unknown)} in {cluster.source.name} "
                         f"(hosts: {', '.join(h.name for h in cluster.hosts)})")
    return cluster.select(list(dict.fromkeys(names)))


def plan_for_os_upgrade(cluster: Cluster, pool, *, names: Sequence[str] = ()) -> tuple[Plan, OsUpgradeInput]:
    hosts = tuple(_selected(cluster, names))
    if any(h.is_control_plane or h.is_worker for h in hosts):
        state = probe_cluster(cluster, pool)
        if not state.initialized:
            raise CheckFailed(f"the API server did not answer on {cluster.first_control_plane.name} "
                              f"({state.problem or 'no cluster there'}): nodes cannot be drained; nothing was changed",
                              hint="bring the control plane back first (kubeforge up)")
    facts = gather_os_facts(cluster, pool, hosts)
    failed = [n for n, f in facts.items() if f.update_failed]
    if failed:
        raise CheckFailed(f"apt-get update failed on {', '.join(failed)}: the package sources do not answer; nothing was changed",
                          hint="check the hosts' apt sources (the mirror), then run again")
    inp = OsUpgradeInput(cluster, facts, hosts if names else ())
    return plan_packages(inp), inp


def os_upgrade(
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    names: Sequence[str] = (),
    confirm: Callable[[Plan], bool],
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    show: Callable[[Plan], None] | None = None,
) -> OsUpgradeResult:
    plan, inp = plan_for_os_upgrade(cluster, pool, names=names)
    result = OsUpgradeResult(plan, preview(inp), None)

    def stages():
        yield plan
        fresh = OsUpgradeInput(cluster, gather_os_facts(cluster, pool, inp.selected), inp.hosts)
        result.reboot_plan = plan_reboots(fresh)
        yield result.reboot_plan

    if options.dry_run:
        # what would reboot is known for sure only after the packages are in: the dry run walks the
        # packages stage and the reboots the hosts already ask for (the preview says which may follow)
        combined = Plan(plan.workflow, (*plan.phases, *plan_reboots(inp).phases))
        run = execute(combined, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, events=events, show=show)
        result.plan = combined
    else:
        run = execute(plan, site(cluster, pool, run_dir=run_dir, log_path=log_path), options, confirm=confirm,
                      events=events, show=show, stages=stages)
    result.report = run.report if run else None
    return result
