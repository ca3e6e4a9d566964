"""``kubeforge node remove NAME...`` and ``kubeforge node replace NAME``: options -> one workflow call -> the report."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import command_line, consoles, declined, start_run_log
from kubeforge.cli.options import BREAK_LOCK, FORCE_BARE_PODS, INVENTORY, OUTPUT, YES, Output, allow_bare_pods

node_app = typer.Typer(help="Nodes leaving the cluster, and dead machines replaced.", no_args_is_help=True)
# Optional for click, required by the workflow (a usage error naming the inventory's hosts): the
# inventory is read first, as by every command.
NAMES = typer.Argument(None, metavar="NAME...", help="Hosts of the inventory that leave the cluster.", show_default=False)


def run_node_remove(inventory: Path, names: list[str] | None, *, yes: bool, dry_run: bool, resume: bool, break_lock: bool,
                    drain_timeout: int | None, allow_below_quorum: bool, force_bare_pods: bool = False) -> None:
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.output import show, structured
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.node import next_step, node_remove

    cluster = allow_bare_pods(load_cluster(inventory), force_bare_pods)
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, resume="" if resume else None, break_lock=break_lock)
    with start_run_log(cluster, "node-remove") as run_log, TransportPool(cluster) as pool:
        plan, report = node_remove(
            cluster, pool, options, names=names or [], confirm=Confirmer(err, yes=yes), drain_timeout_s=drain_timeout,
            allow_below_quorum=allow_below_quorum, events=None if structured() else make_progress(err),
            run_dir=run_log.dir, log_path=run_log.path, show=None if structured() else (lambda p: print_plan(err, p)))
    if report is None:
        raise declined()
    done = report.outcome == "succeeded" and not dry_run
    after = next_step(cluster, names or [], str(inventory))

    def table() -> None:
        print_report(out, report)
        if done:
            out.print(after, markup=False)

    show(lambda: {"plan": plan.to_dict(), "report": report.to_dict(), **({"next": after} if done else {})}, table)


def run_node_replace(inventory: Path, name: str | None, *, yes: bool, dry_run: bool, resume: bool, break_lock: bool,
                     force: bool, accept_new_host_key: bool) -> None:
    from kubeforge.execute import RunOptions
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.output import show, structured
    from kubeforge.ui.plan_view import print_plan
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.node import node_replace, replacement_host_key

    cluster = replacement_host_key(load_cluster(inventory), name or "", accept_new=accept_new_host_key)
    out, err = consoles()
    options = RunOptions(command_line(), dry_run=dry_run, resume="" if resume else None, break_lock=break_lock)
    with start_run_log(cluster, "node-replace") as run_log, TransportPool(cluster) as pool:
        plan, report = node_replace(
            cluster, pool, options, name=name or "", confirm=Confirmer(err, yes=yes), force=force,
            events=None if structured() else make_progress(err), run_dir=run_log.dir, log_path=run_log.path,
            show=None if structured() else (lambda p: print_plan(err, p)))
    if report is None:
        raise declined()
    show(lambda: {"plan": plan.to_dict(), "report": report.to_dict()}, lambda: print_report(out, report))


def register(app: typer.Typer) -> None:
    @node_app.command("replace")
    def replace_cmd(
        # optional for click, as NAME... of remove: the inventory is read first, then a missing name
        # is a usage error listing its hosts
        name: str | None = typer.Argument(None, metavar="NAME", help="The inventory's host whose machine died.",
                                          show_default=False),
        inventory: Path = INVENTORY,
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run; change no host."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished `node replace` run."),
        break_lock: bool = BREAK_LOCK,
        force: bool = typer.Option(False, "--force", help="Replace the host even though it is reachable and healthy."),
        accept_new_host_key: bool = typer.Option(
            False, "--accept-new-host-key",
            help="The replacement has a new SSH host key: forget NAME's old keys in known_hosts and record the new one "
                 "(this host only; its fingerprint is logged)."),
        output: Output = OUTPUT,
    ) -> None:
        """Replace a dead machine by a blank one brought up at the inventory's address: its etcd
        member removed and added again as a learner, promoted once caught up (gated on quorum before
        and after each change), the old Node object deleted, the new machine joined (fresh token;
        control planes: certificates uploaded again). The balancers' backends stay as they are.

        Refused (exit 7, nothing changed) when the host is reachable and healthy (that is
        `node remove` then `up`; --force to replace it anyway), for the first control plane, and
        when another etcd member is down too (removing the dead one could lose quorum).

        Example: kubeforge node replace etcd-3 -i inventory.yaml --accept-new-host-key --yes
        """
        run_node_replace(inventory, name, yes=yes, dry_run=dry_run, resume=resume, break_lock=break_lock,
                         force=force, accept_new_host_key=accept_new_host_key)

    @node_app.command("remove")
    def remove_cmd(
        names: list[str] | None = NAMES,
        inventory: Path = INVENTORY,
        yes: bool = YES,
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run; change nothing."),
        resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished `node remove` run."),
        break_lock: bool = BREAK_LOCK,
        drain_timeout: int = typer.Option(None, "--drain-timeout", min=1, metavar="SECONDS",
                                          help="How long a drain may wait for PodDisruptionBudgets (default: upgrade.drainTimeout)."),
        allow_below_quorum: bool = typer.Option(False, "--allow-below-quorum",
                                                help="Remove etcd members even when fewer than today's quorum stay (2 -> 1)."),
        force_bare_pods: bool = FORCE_BARE_PODS,
        output: Output = OUTPUT,
    ) -> None:
        """Take hosts out of the cluster: drain (PodDisruptionBudgets respected), update the load
        balancers, remove their etcd members (never below quorum), kubeadm reset, delete the Node
        objects, remove kubeforge's files. The hosts stay in the inventory until this has run;
        delete them from it afterwards.

        Refused (exit 7, nothing changed) for the first control plane, or when too few etcd
        members or balancers would stay.

        Example: kubeforge node remove worker-3 -i inventories/ha-external-etcd.yaml --yes
        """
        run_node_remove(inventory, names, yes=yes, dry_run=dry_run, resume=resume, break_lock=break_lock,
                        drain_timeout=drain_timeout, allow_below_quorum=allow_below_quorum, force_bare_pods=force_bare_pods)

    app.add_typer(node_app, name="node")
