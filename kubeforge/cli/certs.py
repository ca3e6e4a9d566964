"""``kubeforge certs check|renew``: the certificates on the hosts beside the local store, and their
rolling renewal. Thin: kubeforge.workflows.certs does the work, kubeforge.ui.certs_view the tables."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kubeforge.cli.options import BREAK_LOCK, DRY_RUN, HOSTS, INVENTORY, OUTPUT, RUN_ARG, YES, Output

if TYPE_CHECKING:
    from rich.console import Console

    from kubeforge.model.cluster import Cluster

certs_app = typer.Typer(
    name="certs",
    help="The cluster's certificates: check them on the hosts, renew what expires.\n\n"
         "Example: kubeforge certs check -i inventory.yaml",
    no_args_is_help=True,
)


def check(
    cluster: Cluster,
    *,
    within_days: int = 30,
    output: str = "table",
    now: datetime | None = None,
    console: Console | None = None,
) -> None:
    """Show the expiry report; raise CertificatesExpiring when something expires within the window.

    Reads the store only: a missing store is an error pointing at ``kubeforge render``.
    """
    from kubeforge.errors import CertificatesExpiring, UsageError
    from kubeforge.pki import expiring, expiry_report, load_pki
    from kubeforge.ui import output as out
    from kubeforge.ui.certs_view import certs_table
    from kubeforge.ui.console import make_console

    if output not in out.FORMATS:
        raise UsageError(f"--output {output!r} is not one of {', '.join(out.FORMATS)}")
    if within_days < 0:
        raise UsageError("--within-days must be 0 or more")
    report = expiry_report(load_pki(cluster), now)
    soon = expiring(report, within_days)
    doc = {
        "cluster": cluster.name,
        "withinDays": within_days,
        "certificates": [s.to_json() | {"expiring": s.expires_within(within_days)} for s in report],
    }
    if output == "table":
        certs_table(report, within_days, cluster.pki_dir, console or make_console())
    elif console is not None:  # called as a library function: the document goes there, now
        console.file.write(out.render(doc, output))
    else:
        out.show(doc, lambda: None)
    if soon:
        names = ", ".join(s.name for s in soon)
        raise CertificatesExpiring(
            f"{len(soon)} certificate{'s' if len(soon) != 1 else ''} expire within {within_days} days: {names}",
            hint="renew them before they expire (kubeforge never renews certificates silently)",
        )


WITHIN_DAYS = typer.Option(30, "--within-days", metavar="N",
                          help="Certificates with N days left or less count as expiring (check exits 9).")


def check_hosts(cluster: Cluster, *, within_days: int) -> None:
    """Read every host and the store; show both; exit 5 when a host could not be read, else 9 when
    something (on a host or in the store) expires within the window."""
    from kubeforge.cli.common import consoles, session
    from kubeforge.errors import CertificatesExpiring, CheckFailed
    from kubeforge.ui.certs_view import hosts_table
    from kubeforge.ui.output import show
    from kubeforge.workflows.certs import check as read_check

    with session(cluster, "certs-check") as (_, pool):
        result = read_check(cluster, pool, within_days=within_days)
    show(result.to_json(cluster.name), lambda: hosts_table(result, consoles()[0]))
    if result.hosts.unreachable:
        raise CheckFailed(f"cannot read the certificates on {', '.join(result.hosts.unreachable)}",
                          hint="bring the machine back (or fix SSH) and check again",
                          unreachable=result.hosts.unreachable)
    soon = [f"{f.cert.host}:{f.cert.path}" for f in result.hosts.expiring]
    soon += [f"store:{s.name}" for s in result.store_expiring]
    if soon:
        raise CertificatesExpiring(
            f"{len(soon)} certificate{'s' if len(soon) != 1 else ''} expire within {within_days} days: "
            + ", ".join(soon[:8]) + (f" and {len(soon) - 8} more" if len(soon) > 8 else ""),
            hint=f"renew them: kubeforge certs renew -i {cluster.source} --within-days {within_days}")


@certs_app.command("check")
def check_cmd(
    inventory: Path = INVENTORY,
    within_days: int = WITHIN_DAYS,
    store_only: bool = typer.Option(False, "--store-only",
                                    help="Read only the local PKI store (no host is contacted)."),
    output: Output = OUTPUT,
) -> None:
    """Every certificate on every host and in the local store: expiry, SANs, issuer, and where a
    host's copy differs from the store. Exit 9 if any expires within the window; 5 if a host
    cannot be read.

    Example: kubeforge certs check -i inventories/ha-external-etcd.yaml --within-days 60
    """
    from kubeforge.inventory import load_cluster
    from kubeforge.ui.output import current_format

    cluster = load_cluster(inventory)
    if store_only:
        # the format --output set (the parameter itself is None under some typer/click pairs)
        check(cluster, within_days=within_days, output=current_format())
    else:
        check_hosts(cluster, within_days=within_days)


@certs_app.command("renew")
def renew_cmd(
    run: str | None = RUN_ARG,
    inventory: Path = INVENTORY,
    within_days: int = WITHIN_DAYS,
    renew_all: bool = typer.Option(False, "--all", help="Renew every certificate this command renews, expiring or not."),
    hosts: str | None = HOSTS,
    resume: bool = typer.Option(False, "--resume", help="Continue a failed or interrupted renewal in its journal."),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
    break_lock: bool = BREAK_LOCK,
    output: Output = OUTPUT,
) -> None:
    """Renew what expires within the window: etcd members, then control planes, one at a time.

    Reads every host first (exit 5 if one cannot be read) and needs every etcd member healthy (exit 4)
    before restarting one. The expiring etcd leaves are re-issued from the etcd CA in the local store,
    then each member gets its files, etcd restarts, and every member must be healthy under one leader
    before the next. Each control plane then gets the API server's etcd client certificate and
    `kubeadm certs renew` for kubeadm's expiring certificates, kube-apiserver restarts, and its API must
    answer before the next; a local admin.conf is fetched again afterwards. What expires but is not
    renewed (CAs, the kubelet's, controller-manager.conf, scheduler.conf) is named in the plan.

    Example: kubeforge certs renew -i inventories/ha-external-etcd.yaml --within-days 30 --dry-run
    """
    from kubeforge.cli.common import nothing_to_do, resume_value, run_plan, session
    from kubeforge.cli.options import split_hosts
    from kubeforge.execute.lock import clear_leftover
    from kubeforge.inventory import load_cluster
    from kubeforge.workflows.certs import plan_renew, refresh_local_admin

    resume_run = resume_value(resume, run)
    cluster = load_cluster(inventory)
    with session(cluster, "certs-renew") as (run_log, pool):
        plan, _ = plan_renew(cluster, pool, within_days=within_days, renew_all=renew_all,
                             hosts=split_hosts(hosts), write_store=not dry_run, resume=resume_run is not None)
        if all(p.is_noop or p.name == "NotRenewed" for p in plan.phases) and resume_run is None:
            warned = next((p.title for p in plan.phases if p.name == "NotRenewed"), "")
            if not dry_run:  # what the run engine does before it takes the lock
                clear_leftover(cluster.state_dir, pool)
            nothing_to_do(f"nothing to renew within {within_days} days" + (f" ({warned})" if warned else ""))
            return
        report = run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock,
                          resume=resume_run, converged="nothing changed: every certificate was already renewed")
        if not dry_run and report.outcome == "succeeded":
            refresh_local_admin(cluster, pool, plan)

@certs_app.command("rotate-ca")
def rotate_ca_cmd(
    run: str | None = RUN_ARG,
    inventory: Path = INVENTORY,
    ca: str = typer.Option(..., "--ca", metavar="etcd|kubernetes|front-proxy", help="The CA to rotate."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted rotation in its journal."),
    dry_run: bool = DRY_RUN,
    yes: bool = YES,
    break_lock: bool = BREAK_LOCK,
    output: Output = OUTPUT,
) -> None:
    """Rotate a CA without downtime, in three phases rolled one host at a time behind health gates:
    both CAs trusted everywhere; every leaf re-issued from the new CA; the old CA dropped.

    The new CA is written to the local store before anything changes and the store records each
    phase when it is done, so an interrupted rotation goes on where it stopped (with --resume, or a
    new run planned from the store's record); until it ends, nothing else may issue certificates
    from the store. `--ca etcd` (external etcd: the members, then the API servers' etcd client, in
    each phase), `--ca front-proxy` (the control planes' API servers, stacked or external etcd) and
    `--ca kubernetes` (the cluster CA: the control planes one at a time, then the workers, in each
    phase; every kubeconfig, the kubelets' client certificates, cluster-info and the local admin
    kubeconfig) are rotated by this version; the etcd CA of stacked etcd is refused (exit 7, nothing
    touched).

    Example: kubeforge certs rotate-ca --ca front-proxy -i inventories/ha-external-etcd.yaml --dry-run
    """
    from kubeforge.cli.common import nothing_to_do, resume_value, run_plan, session
    from kubeforge.inventory import load_cluster
    from kubeforge.pki import ca_rotation
    from kubeforge.workflows.certs_rotate import check_ca, plan_rotate_ca

    resume_run = resume_value(resume, run)
    cluster = load_cluster(inventory)
    check_ca(cluster, ca)  # refused before any host is contacted
    ca_rotation.refuse_while_rotating(cluster, but=ca)  # another CA's rotation under way: likewise
    if resume_run is not None and ca_rotation.read_state(cluster, ca) is None:
        # the run's rotation wrote its new CA before its first step, so none under way means the run
        # reached its last step, the store's commit (a signal can still end it with exit 8 then):
        # planning now would begin the next rotation under the journal of this one
        nothing_to_do(f"nothing to resume: the run's {ca} CA rotation was committed to the store (no rotation "
                      "is under way)")
        return
    with session(cluster, "certs-rotate-ca") as (run_log, pool):
        plan = plan_rotate_ca(cluster, pool, ca=ca, write_store=not dry_run)
        run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock, resume=resume_run,
                 converged=f"nothing changed: the {ca} CA rotation had already converged")


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app, name="certs")
