"""``kubeforge etcd install|status|backup|restore|members|upgrade``: thin commands over
kubeforge.workflows.etcd; tables here, the work there."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from kubeforge.cli.common import command_line, consoles, start_run_log

etcd_app = typer.Typer(help="The etcd cluster: install, status, backup, restore, membership, upgrade.",
                       no_args_is_help=True)

INVENTORY = typer.Option(..., "-i", "--inventory", help="The inventory file.", show_default=False)
BREAK_LOCK = typer.Option(False, "--break-lock", help="Remove a stale cluster lock first (another run's, left behind).")


def _load(inventory: Path):
    from kubeforge.inventory import load_cluster

    return load_cluster(inventory)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _run_plan(cluster, plan, pool, run_log, *, dry_run: bool, yes: bool, break_lock: bool = False,
              resume: Optional[str] = None):
    """Show progress, confirm, run under the local and cluster locks; print the report. Raises what
    the executor raises."""
    from kubeforge.ui.confirm import Confirmer
    from kubeforge.ui.progress import make_progress
    from kubeforge.ui.report_view import print_report
    from kubeforge.workflows.etcd.common import execute_plan

    out, err = consoles()
    if dry_run:
        from kubeforge.ui.plan_view import print_plan

        print_plan(out, plan)
    report = execute_plan(cluster, plan, pool, dry_run=dry_run, confirm=Confirmer(err, yes=yes),
                          events=make_progress(err), run_dir=None if dry_run else run_log.dir,
                          command=command_line(), break_lock=break_lock, resume=resume)
    if report is None:
        err.print("declined: nothing was changed")
        raise typer.Exit(1)
    print_report(out, report)
    if report.outcome == "succeeded" and report.changed() == 0:
        out.print("nothing changed: every etcd member had already converged")
    return report


def status_table(status, console) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="etcd", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("member", "endpoint", "health", "leader", "version", "db size", "raft index", "alarms"):
        table.add_column(col, no_wrap=col != "alarms")
    for m in status.members:
        health = "[green]healthy[/]" if m.healthy else f"[bold red]{escape(m.error or 'unhealthy')}[/]"
        role = "leader" if m.is_leader else ("learner" if m.is_learner else ("follower" if m.member_id else "-"))
        table.add_row(escape(m.name), escape(m.endpoint), health, role, escape(m.version or "-"), _size(m.db_size),
                      str(m.raft_index) if m.raft_index is not None else "-", escape(", ".join(m.alarms) or "-"))
    console.print(table)
    leader = status.leader.name if status.leader else "none"
    console.print(f"{status.healthy_count}/{len(status.members)} healthy, quorum {status.quorum}, leader {leader}")


def run_status(inventory: Path, output: str) -> None:
    from kubeforge.errors import CheckFailed, UsageError
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.status import gather_status

    if output not in ("table", "json"):
        raise UsageError(f"--output {output!r} is not one of table, json")
    cluster = _load(inventory)
    with start_run_log(cluster, "etcd-status"), TransportPool(cluster) as pool:
        status = gather_status(cluster, pool)
    if output == "json":
        from kubeforge.ui.output import emit_json

        emit_json(status.to_dict())
    else:
        status_table(status, consoles()[0])
    bad = [m for m in status.members if not m.healthy]
    if not status.has_quorum:
        raise CheckFailed(f"etcd has lost quorum: {status.healthy_count} of {len(status.members)} members healthy"
                          + (f"; unhealthy: {', '.join(m.name for m in bad)}" if bad else ""))
    if bad or status.alarms:
        what = [f"{m.name} ({m.error or 'unhealthy'})" for m in bad] + status.alarms
        raise CheckFailed("etcd is degraded: " + "; ".join(what))


def run_install(inventory: Path, dry_run: bool, yes: bool, break_lock: bool = False) -> None:
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.install import plan_install

    cluster = _load(inventory)
    with start_run_log(cluster, "etcd-install") as run_log, TransportPool(cluster) as pool:
        try:
            plan, _ = plan_install(cluster, pool)
        except StackedEtcd as exc:
            consoles()[0].print(str(exc), markup=False)
            return
        _run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock)


def run_backup(inventory: Path, directory: Optional[Path], keep: Optional[int], passphrase_file: Optional[Path],
               output: str) -> None:
    from kubeforge.errors import InputError
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.backup import options_from_cluster, take_backup

    cluster = _load(inventory)
    passphrase = _passphrase(passphrase_file)
    if keep is not None and keep < 1:
        raise InputError("--keep must be at least 1")
    opts = options_from_cluster(cluster, directory=directory.absolute() if directory else None, keep=keep,
                                passphrase=passphrase)
    if passphrase is not None and opts.encryption == "none":
        from dataclasses import replace

        opts = replace(opts, encryption="passphrase")
    with start_run_log(cluster, "etcd-backup"), TransportPool(cluster) as pool:
        result = take_backup(cluster, pool, opts)
    if output == "json":
        from kubeforge.ui.output import emit_json
        from kubeforge.workflows.etcd.backup import manifest_json
        import json

        emit_json(json.loads(manifest_json(result)))
        return
    m = result.manifest
    out = consoles()[0]
    skipped = [s for s in result.status.members if not s.healthy]
    for s in skipped:
        out.print(f"note: member {s.name} is not healthy ({s.error or 'unhealthy'}); backed up from {m.member}",
                  markup=False)
    rows = [
        ("backup", m.name), ("member", m.member), ("revision", str(m.revision)), ("keys", str(m.total_keys)),
        ("size", f"{_size(m.size)} ({m.size} bytes)"), ("sha256", m.sha256),
        ("verification", "passed (checksum member = download, integrity hash, snapshot status)"),
        ("encrypted", m.encryption if m.encrypted else "no"), ("file", str(result.path)),
        ("manifest", str(result.manifest_path)), ("pki bundle", m.pki_bundle or "-"),
        ("deleted", ", ".join(result.deleted) or "-"), ("took", f"{result.timings.get('total', 0):.2f}s"),
    ]
    for k, v in rows:
        out.print(f"{k:>12}: {v}", markup=False)


def _passphrase(passphrase_file: Optional[Path]):
    from kubeforge.errors import InputError
    from kubeforge.model.secret import Secret

    if passphrase_file is None:
        return None
    try:
        return Secret(passphrase_file.read_text().rstrip("\n"))
    except OSError as exc:
        raise InputError(f"{passphrase_file}: cannot read the passphrase file: {exc.strerror}") from None


def run_restore(inventory: Path, source: str, directory: Optional[Path], passphrase_file: Optional[Path],
                dry_run: bool, yes: bool) -> None:
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.restore import plan_restore

    cluster = _load(inventory)
    with start_run_log(cluster, "etcd-restore") as run_log, TransportPool(cluster) as pool:
        plan, inp = plan_restore(cluster, pool, source, directory=directory.absolute() if directory else None,
                                 passphrase=_passphrase(passphrase_file))
        err = consoles()[1]
        err.print(f"restoring {inp.backup_name} (verified here: sha256 {inp.snapshot_sha256[:16]}…) onto "
                  f"{', '.join(m.name for m in inp.members)}; old data dirs kept at {inp.aside}", markup=False)
        _run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes)


def run_members(inventory: Path, dry_run: bool, yes: bool, break_lock: bool = False) -> None:
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.members import plan_members

    cluster = _load(inventory)
    with start_run_log(cluster, "etcd-members") as run_log, TransportPool(cluster) as pool:
        try:
            plan, change = plan_members(cluster, pool)
        except StackedEtcd as exc:
            consoles()[0].print(str(exc), markup=False)
            return
        if change.is_noop:
            consoles()[0].print("nothing to do: the cluster's members are the inventory's etcd hosts")
            return
        _run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock)


def run_upgrade(inventory: Path, target: str, dry_run: bool, yes: bool, *, allow_older_patch: bool = False,
                resume: Optional[str] = None, break_lock: bool = False) -> None:
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.backup import options_from_cluster, take_backup
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.upgrade import plan_upgrade

    cluster = _load(inventory)
    out = consoles()[0]
    with start_run_log(cluster, "etcd-upgrade") as run_log, TransportPool(cluster) as pool:
        def snapshot() -> bool:
            take_backup(cluster, pool, options_from_cluster(cluster))
            return True

        try:
            plan = plan_upgrade(cluster, pool, target, snapshot, allow_older_patch=allow_older_patch)
        except StackedEtcd as exc:
            out.print(str(exc), markup=False)
            return
        report = _run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock,
                           resume=resume)
        if not dry_run and report.outcome == "succeeded":
            out.print(f"etcd runs {target} on every member; set etcd.version: {target} in {inventory} so that "
                      "`etcd install` and `up` keep it", markup=False)


def register(app: typer.Typer) -> None:
    @etcd_app.command("status")
    def status_cmd(
        inventory: Path = INVENTORY,
        output: str = typer.Option("table", "--output", "-o", help="table or json."),
    ) -> None:
        """Members, leader, version, db size, raft index, health and alarms of every member.

        Read-only. Exit 4 when quorum is lost or any member is unhealthy (naming it).

        Example: kubeforge etcd status -i inventories/ha-external-etcd.yaml -o json
        """
        run_status(inventory, output)

    @etcd_app.command("install")
    def install_cmd(
        inventory: Path = INVENTORY,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
        break_lock: bool = BREAK_LOCK,
    ) -> None:
        """Install etcd on the dedicated etcd hosts (external topology) and start the cluster.

        Packages at the inventory's version, etcd user and data dir, PKI, env file and unit; all
        members of a new cluster start together, then a health gate. On a running cluster only
        changed members restart, one at a time, leader last. A converged cluster changes nothing.

        Example: kubeforge etcd install -i inventories/ha-external-etcd.yaml --yes
        """
        run_install(inventory, dry_run, yes, break_lock)

    @etcd_app.command("backup")
    def backup_cmd(
        inventory: Path = INVENTORY,
        directory: Optional[Path] = typer.Option(None, "--dir", help="Where backups go (default: the inventory's etcd.backup.directory)."),
        keep: Optional[int] = typer.Option(None, "--keep", help="Verified backups to keep (the newest is always kept)."),
        passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", help="Encrypt with the passphrase in this file."),
        output: str = typer.Option("table", "--output", "-o", help="table or json."),
    ) -> None:
        """Snapshot a healthy member (a follower when possible), stream it here, verify it, keep N.

        A member that is down does not stop the backup. A file that fails verification goes to
        failed/ and is never counted. Exit 4 when no member is healthy or verification fails.

        Example: kubeforge etcd backup -i inventories/ha-external-etcd.yaml --keep 7
        """
        run_backup(inventory, directory, keep, passphrase_file, output)

    @etcd_app.command("restore")
    def restore_cmd(
        inventory: Path = INVENTORY,
        source: str = typer.Option(..., "--from", help="A backup manifest, a backup name, or 'latest'.", show_default=False),
        directory: Optional[Path] = typer.Option(None, "--dir", help="Where backups are (default: the inventory's)."),
        passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", help="Passphrase of an encrypted backup."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
    ) -> None:
        """Restore every member from one verified backup (the old data dirs are kept aside).

        The backup is re-verified here first (manifest, checksum, integrity hash). Then: API servers
        stopped, etcd stopped everywhere, the snapshot pushed and checked on every member, restored
        with a new cluster token, all members started together, health gate, API servers back.

        Example: kubeforge etcd restore -i inventories/ha-external-etcd.yaml --from latest --yes
        """
        run_restore(inventory, source, directory, passphrase_file, dry_run, yes)

    @etcd_app.command("members")
    def members_cmd(
        inventory: Path = INVENTORY,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
        break_lock: bool = BREAK_LOCK,
    ) -> None:
        """Make the etcd member list match the inventory's etcd hosts, one member at a time.

        New hosts: certificates issued, etcd installed, added as a learner, started, promoted once
        caught up. Hosts gone from the inventory: leadership moved away, member removed, etcd
        stopped and disabled there. Refused (exit 7) before anything is touched: adding and removing
        at once, no quorum now, or a removal that would leave fewer healthy members than a quorum.

        Example: kubeforge etcd members -i inventories/ha-external-etcd.yaml --yes
        """
        run_members(inventory, dry_run, yes, break_lock)

    @etcd_app.command("upgrade")
    def upgrade_cmd(
        run: Optional[str] = typer.Argument(None, help="With --resume: the run to continue (default: the latest unfinished)."),
        inventory: Path = INVENTORY,
        to: str = typer.Option(..., "--to", help="The etcd version to reach (X.Y.Z).", show_default=False),
        allow_older_patch: bool = typer.Option(
            False, "--allow-older-patch",
            help="Skip the latest-patch-first hop when the package source lacks it (never a hard floor or a minor)."),
        resume: bool = typer.Option(False, "--resume", help="Continue a failed or interrupted upgrade in its journal."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before changing hosts."),
        break_lock: bool = BREAK_LOCK,
    ) -> None:
        """Upgrade etcd one minor at a time, one member at a time (leader last), snapshot first.

        Before anything changes, one healthy member is asked which etcd versions the package source
        offers: a hop it lacks is refused (exit 7) naming the hop and the ways out. Also refused
        (exit 7): an unfinished Kubernetes upgrade, downgrades, unsupported minors, a rolling
        3.4 -> 3.5 with auth enabled; and (exit 4) unless every member is healthy. After each hop
        the cluster version must reach it. A run that failed half-way (exit 6) is continued by the
        same command, or with --resume to keep its journal.

        Example: kubeforge etcd upgrade -i inventories/ha-external-etcd.yaml --to 3.6.5 --dry-run
        """
        from kubeforge.cli.common import resume_value

        run_upgrade(inventory, to, dry_run, yes, allow_older_patch=allow_older_patch, resume=resume_value(resume, run),
                    break_lock=break_lock)

    app.add_typer(etcd_app, name="etcd")
