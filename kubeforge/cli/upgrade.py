"""``kubeforge upgrade -i FILE --to X.Y.Z``: options -> one workflow call -> the report.

The run log, the consoles and the --resume [RUN] convention are the ones `up` uses
(kubeforge.cli.lifecycle), so every lifecycle command behaves alike."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import command_line, consoles, declined, resume_value, start_run_log
from kubeforge.cli.options import BREAK_LOCK, FORCE_BARE_PODS, INVENTORY, OUTPUT, RUN_ARG, YES, Output, allow_bare_pods


def run_upgrade(inventory: Path, to: str, *, multi_hop: bool, yes: bool, dry_run: bool, resume: str | None,
                break_lock: bool, allow_removed_apis: bool = False, force_bare_pods: bool = False) -> None:
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.output import show, structured
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.upgrade import parse_target, upgrade

    parse_target(to)  # a bad --to is a usage error before the inventory is even read
    cluster = allow_bare_pods(load_cluster(inventory), force_bare_pods)
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, resume=resume, break_lock=break_lock)

    def show_path(path) -> None:
        if len(path) > 1:
            err.print("Upgrade path: " + " -> ".join(str(v) for v in path) + " (one minor at a time)", markup=False)

    with start_run_log(cluster, "upgrade") as run_log, TransportPool(cluster) as pool:
        outcome = upgrade(
            cluster, pool, options, to=to, multi_hop=multi_hop, allow_removed_apis=allow_removed_apis,
            confirm=Confirmer(err, yes=yes),
            events=None if structured() else make_progress(err), run_dir=run_log.dir, log_path=run_log.path,
            on_path=show_path, show=None if structured() else (lambda p: print_plan(err, p)),
        )
    if outcome is None:
        raise declined()

    def table() -> None:
        for report in outcome.reports:
            print_report(out, report)
        for b in outcome.backups:
            out.print(f"etcd backup (verified) before the upgrade: {b.path}", markup=False)
        if not outcome.path and outcome.plan.is_noop:
            out.print(f"nothing to do: every node already runs {outcome.target}", markup=False)
        elif not outcome.path:  # a resumed run finishing what it left: nodes back in service, the record
            out.print(f"every node already ran {outcome.target}: finished what the resumed run had left", markup=False)

    show(lambda: {
        "target": str(outcome.target),
        "path": [str(v) for v in outcome.path],
        "run_id": outcome.run_id,
        "plan": outcome.plan.to_dict(),
        "reports": [r.to_dict() for r in outcome.reports],
        "backups": [str(b.path) for b in outcome.backups],
    }, table)
    ran = outcome.reports and all(r.outcome == "succeeded" for r in outcome.reports) and not dry_run
    if (ran or not outcome.path) and cluster.kubernetes_version != outcome.target:
        # `up` refuses an inventory that names another version than the nodes run
        out.print(f"next: set spec.kubernetesVersion to \"{outcome.target}\" in {inventory}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("upgrade")
    def upgrade_cmd(
        inventory: Path = INVENTORY,
        run: str | None = RUN_ARG,
        to: str = typer.Option(..., "--to", metavar="X.Y.Z", help="The Kubernetes version to reach.", show_default=False),
        multi_hop: bool = typer.Option(False, "--multi-hop", help="Cross several minors, one minor at a time."),
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run on every host; change nothing."),
        resume: bool = typer.Option(False, "--resume", help="Continue a failed or interrupted upgrade after re-checking facts."),
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
        allow_removed_apis: bool = typer.Option(
            False, "--allow-removed-apis",
            help="Go on although objects are written in API versions a hop stops serving (a warning in the plan)."),
        force_bare_pods: bool = FORCE_BARE_PODS,
    ) -> None:
        """Upgrade Kubernetes one minor at a time, without an outage.

        Per hop: verified etcd backup, package source switched to the new minor, the first control
        plane (kubeadm upgrade apply), the other control planes one at a time, then workers in
        batches of upgrade.maxUnavailable; each node drained, upgraded, Ready, uncordoned.

        Refuses before changing anything (exit 7): a downgrade, a skipped minor without
        --multi-hop, a NotReady node, an unhealthy etcd member, a version the package source does
        not offer, objects written in an API version a hop stops serving (each named; see
        --allow-removed-apis). A failed step exits 6, Ctrl-C 8: continue with --resume. A drain
        meets a pod no controller manages: exit 6 naming it; --force-bare-pods lets drains delete it.

        Example: kubeforge upgrade -i inventories/ha-external-etcd.yaml --to 1.34.2 --yes
        Example: kubeforge upgrade -i inventories/ha-external-etcd.yaml --to 1.34.2 --resume
        """

        run_upgrade(inventory, to, multi_hop=multi_hop, yes=yes, dry_run=dry_run, resume=resume_value(resume, run),
                    break_lock=break_lock, allow_removed_apis=allow_removed_apis, force_bare_pods=force_bare_pods)
