"""``kubeforge upgrade -i FILE --to X.Y.Z``: options -> one workflow call -> the report."""

from __future__ import annotations

from pathlib import Path

import typer

OUTPUTS = ("table", "json")


def run_upgrade(inventory: Path, to: str, multi_hop: bool, yes: bool, dry_run: bool, resume: str | None,
                break_lock: bool, output: str) -> None:
    from kubeforge.cli.errors import CURRENT_LOG_PATH
    from kubeforge.errors import UsageError
    from kubeforge.inventory import load_cluster
    from kubeforge.logs import open_run_log
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.console import make_console
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.upgrade import parse_target, upgrade

    if output not in OUTPUTS:
        raise UsageError(f"--output {output!r} is not one of {', '.join(OUTPUTS)}")
    parse_target(to)  # a bad --to is a usage error before anything is read
    cluster = load_cluster(inventory)
    out = make_console()
    err = make_console(stderr=True)
    # --resume alone takes the latest unfinished run; typer hands "" for a bare flag (see register).
    resume_arg: str | bool | None = None if resume is None else (resume or True)

    def show_path(path) -> None:
        if len(path) > 1:
            err.print("Upgrade path: " + " -> ".join(str(v) for v in path), markup=False)

    with open_run_log(cluster.state_dir, "upgrade") as run_log, TransportPool(cluster) as pool:
        CURRENT_LOG_PATH.append(str(run_log.path))
        outcome = upgrade(
            cluster,
            to,
            pool=pool,
            multi_hop=multi_hop,
            dry_run=dry_run,
            resume=resume_arg,
            break_lock=break_lock,
            confirm=Confirmer(err, yes=yes),
            on_path=show_path,
            events=make_progress(err) if output == "table" else None,
            run_dir=None if resume_arg else run_log.dir,
            log_file=run_log.path,
        )
    if outcome is None:
        err.print("Nothing was changed: the plan was not confirmed.", markup=False)
        raise typer.Exit(1)
    if output == "json":
        from kubeforge.ui.output import emit_json

        emit_json({
            "target": str(outcome.target),
            "path": [str(v) for v in outcome.path],
            "run_id": outcome.run_id,
            "plan": outcome.plan.to_dict(),
            "reports": [r.to_dict() for r in outcome.reports],
            "backups": [str(b.path) for b in outcome.backups],
        })
        return
    if dry_run:
        from kubeforge.ui.plan_view import print_plan

        print_plan(out, outcome.plan)
    for report in outcome.reports:
        print_report(out, report)
    for b in outcome.backups:
        out.print(f"etcd backup (verified): {b.path}", markup=False)
    if not outcome.path:
        out.print(f"Every node already runs {outcome.target}.", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("upgrade")
    def upgrade_cmd(
        inventory: Path = typer.Option(..., "-i", "--inventory", help="The inventory file.", show_default=False),
        to: str = typer.Option(..., "--to", help="The Kubernetes version to reach, X.Y.Z.", show_default=False),
        multi_hop: bool = typer.Option(False, "--multi-hop", help="Cross several minors, one minor at a time."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run; change nothing."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished upgrade to this version."),
        run: str = typer.Option(None, "--run", metavar="RUN", help="With --resume: the run id to continue.", show_default=False),
        break_lock: bool = typer.Option(False, "--break-lock", help="Remove a stale cluster lock first."),
        output: str = typer.Option("table", "--output", "-o", help="table or json."),
    ) -> None:
        """Upgrade the cluster one minor at a time: etcd backup (verified), package source, first
        control plane (kubeadm upgrade apply), other control planes one at a time, workers in
        batches of upgrade.maxUnavailable, each drained, upgraded, Ready, uncordoned.

        Refuses (exit 7, nothing changed) a downgrade, a skipped minor without --multi-hop, an
        unhealthy cluster (node NotReady, etcd member unhealthy), a skew-policy break, and a version
        the package source does not offer. Exit 6 when a step fails and 8 on Ctrl-C: run again
        with --resume to continue where it stopped.

        Example: kubeforge upgrade -i inventories/ha-external-etcd.yaml --to 1.34.2 --yes
        """
        from kubeforge.errors import UsageError

        if run and not resume:
            raise UsageError("--run names the run to continue; it goes with --resume")
        run_upgrade(inventory, to, multi_hop, yes, dry_run, (run or "") if resume else None, break_lock, output)
