"""``kubeforge up``, ``kubeforge reset`` and the ``kubeforge plan up|upgrade`` group: options ->
one workflow call -> ui. Heavy imports stay inside the commands so --help is instant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from kubeforge.cli.common import command_line, consoles, declined, resume_value, start_run_log
from kubeforge.cli.options import BREAK_LOCK, FORCE_BARE_PODS, INVENTORY, OUTPUT, RUN_ARG, YES, Output

plan_app = typer.Typer(help="Print what a command would do, touching nothing.", no_args_is_help=True)


def _finish(report, plan, out, err, what: str, **extra) -> None:
    """The report for people, or ``{"plan", "report", ...extra}`` in json/yaml."""
    from kubeforge.ui.output import show
    from kubeforge.ui.report_view import print_report

    if report is None:
        raise declined()

    def table() -> None:
        print_report(out, report)
        if plan.is_noop:
            out.print(f"nothing to do: {what}")
        elif report.outcome == "succeeded" and report.changed() == 0:
            out.print(f"no changes: every step found the hosts as wanted ({what})")
        for key, value in extra.items():
            out.print(f"{key.replace('_', ' ')}: {value}", markup=False)

    show(lambda: {"plan": plan.to_dict(), "report": report.to_dict(), **{k: str(v) for k, v in extra.items()}}, table)


def run_up(inventory: Path, *, yes: bool, dry_run: bool, resume: str | None, break_lock: bool,
           skip_preflight_warnings: bool, force_bare_pods: bool = False) -> None:
    from kubeforge.cli.options import allow_bare_pods
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.workflows.up import up

    cluster = allow_bare_pods(load_cluster(inventory), force_bare_pods)
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, resume=resume, break_lock=break_lock)
    confirmer = Confirmer(err, yes=yes)
    with start_run_log(cluster, "up") as run_log, TransportPool(cluster) as pool:
        result = up(cluster, pool, options, confirm=confirmer, events=make_progress(err), run_dir=run_log.dir,
                    log_path=run_log.path, show=lambda p: print_plan(err, p),
                    warn=None if skip_preflight_warnings else (lambda m: err.print(m, markup=False)))
    done = result.report is not None and result.report.outcome == "succeeded"
    extra = {"admin_kubeconfig": cluster.state_dir / "admin.conf"} if done else {}
    _finish(result.report, result.plan, out, err, "the cluster has converged", **extra)


def run_plan_up(inventory: Path) -> None:
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.up import plan_for_up

    cluster = load_cluster(inventory)
    with start_run_log(cluster, "plan-up"), TransportPool(cluster) as pool:
        plan, _ = plan_for_up(cluster, pool)
    _show_plan(plan)


def _show_plan(plan) -> None:
    from kubeforge.ui.output import show
    from kubeforge.ui.plan_view import print_plan

    show(plan.to_dict, lambda: print_plan(consoles()[0], plan))


def run_reset(inventory: Path, *, hosts: str | None, purge: bool, yes: bool, dry_run: bool, break_lock: bool) -> None:
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.workflows.reset import reset

    cluster = load_cluster(inventory)
    names = None if hosts is None else [h.strip() for h in hosts.split(",") if h.strip()]
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, break_lock=break_lock)
    with start_run_log(cluster, "reset") as run_log, TransportPool(cluster) as pool:
        plan, report = reset(cluster, pool, options, hosts=names, purge=purge, confirm=Confirmer(err, yes=yes),
                             events=make_progress(err), run_dir=run_log.dir, log_path=run_log.path,
                             show=lambda p: print_plan(err, p))
    _finish(report, plan, out, err, "nothing of kubeforge's is left on those hosts")


def run_plan_upgrade(inventory: Path, to: str, multi_hop: bool, *, allow_removed_apis: bool = False) -> None:
    from kubeforge.errors import UsageError
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool

    if importlib.util.find_spec("kubeforge.workflows.upgrade") is None:
        raise UsageError("`plan upgrade` needs the upgrade workflow, which this build does not have yet")
    from kubeforge.workflows.upgrade import plan_upgrade

    cluster = load_cluster(inventory)
    with start_run_log(cluster, "plan-upgrade"), TransportPool(cluster) as pool:
        plan = plan_upgrade(inventory, to, multi_hop, pool=pool, allow_removed_apis=allow_removed_apis)
    _show_plan(plan)


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up_cmd(
        inventory: Path = INVENTORY,
        run: str | None = RUN_ARG,
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run on every host; change nothing."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted or failed run after re-checking facts."),
        break_lock: bool = BREAK_LOCK,
        skip_preflight_warnings: bool = typer.Option(False, "--skip-preflight-warnings", help="Do not print preflight warnings."),
        output: Output = OUTPUT,
        force_bare_pods: bool = FORCE_BARE_PODS,
    ) -> None:
        """Bring the cluster of the inventory up, or converge it: facts, preflight, prepare hosts,
        packages, PKI, etcd, endpoint, kubeadm init, joins, CNI, Ready, labels, admin kubeconfig.

        A converged cluster changes nothing. Hosts added to the inventory are joined.

        Example: kubeforge up -i inventories/ha-external-etcd.yaml --yes
        Example: kubeforge up -i inventories/ha-external-etcd.yaml --resume
        """
        run_up(inventory, yes=yes, dry_run=dry_run, resume=resume_value(resume, run), break_lock=break_lock,
               skip_preflight_warnings=skip_preflight_warnings, force_bare_pods=force_bare_pods)

    @app.command("reset")
    def reset_cmd(
        inventory: Path = INVENTORY,
        hosts: str = typer.Option(None, "--hosts", help="Only these hosts (comma-separated names)."),
        purge: bool = typer.Option(False, "--purge", help="Delete etcd data instead of keeping it aside."),
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run; change nothing."),
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
    ) -> None:
        """Undo `up` on some or all hosts: kubeadm reset, services stopped and disabled, kubeforge's
        files removed; etcd data moved aside (<data dir>.kubeforge-reset-<time>) unless --purge.

        Refuses a subset that would break etcd quorum or leave no control plane.

        Example: kubeforge reset -i inventories/ha-external-etcd.yaml --hosts worker-3
        """
        run_reset(inventory, hosts=hosts, purge=purge, yes=yes, dry_run=dry_run, break_lock=break_lock)

    @plan_app.command("up")
    def plan_up_cmd(
        inventory: Path = INVENTORY,
        output: Output = OUTPUT,
    ) -> None:
        """Print the `up` plan per phase and host (read-only facts only; nothing changes).

        Example: kubeforge plan up -i inventories/ha-external-etcd.yaml -o json
        """
        run_plan_up(inventory)

    @plan_app.command("upgrade")
    def plan_upgrade_cmd(
        inventory: Path = INVENTORY,
        to: str = typer.Option(..., "--to", help="The Kubernetes version to reach, X.Y.Z."),
        multi_hop: bool = typer.Option(False, "--multi-hop", help="Allow several minors, one at a time."),
        output: Output = OUTPUT,
        allow_removed_apis: bool = typer.Option(False, "--allow-removed-apis",
                                                help="Plan even with objects in API versions the target no longer serves."),
    ) -> None:
        """Print the `upgrade` plan (read-only).

        Example: kubeforge plan upgrade -i inventories/ha-external-etcd.yaml --to 1.34.2
        """
        run_plan_upgrade(inventory, to, multi_hop, allow_removed_apis=allow_removed_apis)

    app.add_typer(plan_app, name="plan")
