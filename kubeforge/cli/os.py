"""``kubeforge os upgrade``: options -> one workflow call -> the report."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import command_line, consoles, declined, start_run_log
from kubeforge.cli.options import BREAK_LOCK, FORCE_BARE_PODS, INVENTORY, OUTPUT, YES, Output, allow_bare_pods

os_app = typer.Typer(help="The hosts' operating system: rolling patch runs.", no_args_is_help=True)


def run_os_upgrade(inventory: Path, names: list[str] | None, *, yes: bool, dry_run: bool, resume: bool,
                   break_lock: bool, force_bare_pods: bool = False) -> None:
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.output import show, structured
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.os_upgrade import os_upgrade

    cluster = allow_bare_pods(load_cluster(inventory), force_bare_pods)
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, resume="" if resume else None, break_lock=break_lock)
    with start_run_log(cluster, "os-upgrade") as run_log, TransportPool(cluster) as pool:
        result = os_upgrade(cluster, pool, options, names=names or [], confirm=Confirmer(err, yes=yes),
                            events=None if structured() else make_progress(err), run_dir=run_log.dir,
                            log_path=run_log.path, show=None if structured() else (lambda p: print_plan(err, p)))
    if result.report is None:
        raise declined()
    report = result.report

    def table() -> None:
        for row in result.preview:
            ups = ", ".join(f"{u['name']} {u['installed'] or '(new)'} -> {u['candidate']}" for u in row["upgrades"]) or "nothing"
            kept = f"; kept: {', '.join(u['name'] for u in row['kept'])}" if row["kept"] else ""
            out.print(f"[{row['host']}] upgrade: {ups}{kept}; reboot: {row['would_reboot']}", markup=False, highlight=False)
        print_report(out, report)

    show(lambda: {"hosts": result.preview, "plan": result.plan.to_dict(), "report": report.to_dict(),
                  **({"reboot_plan": result.reboot_plan.to_dict()} if result.reboot_plan else {})}, table)


def register(app: typer.Typer) -> None:
    @os_app.command("upgrade")
    def upgrade_cmd(
        names: list[str] | None = typer.Argument(None, metavar="[NAME...]", help="Only these hosts (default: every host).",
                                                 show_default=False),
        inventory: Path = INVENTORY,
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show per host what would be upgraded and which would reboot."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished `os upgrade` run."),
        break_lock: bool = BREAK_LOCK,
        force_bare_pods: bool = FORCE_BARE_PODS,
        output: Output = OUTPUT,
    ) -> None:
        """Rolling OS patch run: apt upgrade of everything but the Kubernetes and etcd packages, then
        a reboot only where a host needs one (reboot-required, a newer kernel), each node drained
        before and Ready and uncordoned after. etcd members and control planes one at a time with
        their gates (etcd healthy with quorum, the API's /readyz through the endpoint); workers in
        batches of upgrade.maxUnavailable.

        Example: kubeforge os upgrade -i inventory.yaml --dry-run
        """
        run_os_upgrade(inventory, names, yes=yes, dry_run=dry_run, resume=resume, break_lock=break_lock,
                       force_bare_pods=force_bare_pods)

    app.add_typer(os_app, name="os")
