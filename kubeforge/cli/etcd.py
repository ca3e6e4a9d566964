"""``kubeforge etcd install|status|backup|restore|members|upgrade``: thin commands over
kubeforge.workflows.etcd; tables here, the work there."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import consoles, nothing_to_do, run_plan, session
from kubeforge.cli.options import BREAK_LOCK, INVENTORY, OUTPUT, RUN_ARG, YES, Output

ETCD_CONVERGED = "nothing changed: every etcd member had already converged"

etcd_app = typer.Typer(help="The etcd cluster: install, status, backup, restore, membership, upgrade.",
                       no_args_is_help=True)


def _load(inventory: Path):
    from kubeforge.inventory import load_cluster

    return load_cluster(inventory)


def run_status(inventory: Path) -> None:
    from kubeforge.ui.etcd_view import status_table
    from kubeforge.ui.output import show
    from kubeforge.workflows.etcd.status import gather_status, health_problem

    cluster = _load(inventory)
    with session(cluster, "etcd-status") as (_, pool):
        status = gather_status(cluster, pool)
    show(status.to_dict, lambda: status_table(status, consoles()[0]))
    problem = health_problem(status)
    if problem is not None:
        raise problem


def run_install(inventory: Path, dry_run: bool, yes: bool, break_lock: bool = False) -> None:
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.install import plan_install

    cluster = _load(inventory)
    with session(cluster, "etcd-install") as (run_log, pool):
        try:
            plan, _ = plan_install(cluster, pool)
        except StackedEtcd as exc:
            nothing_to_do(str(exc))
            return
        run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock, converged=ETCD_CONVERGED)


def run_backup(inventory: Path, directory: Path | None, keep: int | None, passphrase_file: Path | None) -> None:
    import json

    from kubeforge.errors import InputError
    from kubeforge.ui.etcd_view import backup_summary
    from kubeforge.ui.output import show
    from kubeforge.workflows.etcd.backup import manifest_json, options_from_cluster, take_backup_stoppable

    cluster = _load(inventory)
    passphrase = _passphrase(passphrase_file)
    if keep is not None and keep < 1:
        raise InputError("--keep must be at least 1")
    opts = options_from_cluster(cluster, directory=directory.absolute() if directory else None, keep=keep,
                                passphrase=passphrase)
    if passphrase is not None and opts.encryption == "none":
        from dataclasses import replace

        opts = replace(opts, encryption="passphrase")
    with session(cluster, "etcd-backup") as (_, pool):
        result = take_backup_stoppable(cluster, pool, opts)
    show(lambda: json.loads(manifest_json(result)), lambda: backup_summary(result, consoles()[0]))


def _passphrase(passphrase_file: Path | None):
    from kubeforge.errors import InputError
    from kubeforge.model.secret import Secret

    if passphrase_file is None:
        return None
    try:
        return Secret(passphrase_file.read_text().rstrip("\n"))
    except OSError as exc:
        raise InputError(f"{passphrase_file}: cannot read the passphrase file: {exc.strerror}") from None


def run_restore(inventory: Path, source: str | None, directory: Path | None, passphrase_file: Path | None,
                dry_run: bool, yes: bool, break_lock: bool = False, *, resume: str | None = None,
                start_over: bool = False) -> None:
    from kubeforge.errors import UsageError
    from kubeforge.workflows.etcd.restore import plan_restore, refuse_unfinished, resumed_restore

    if resume is not None and start_over:
        raise UsageError("--resume continues the unfinished restore and --start-over begins a new one: choose one")
    cluster = _load(inventory)
    if resume is None and source is None:
        raise UsageError("--from BACKUP is needed (a manifest, a backup name, or 'latest'); only --resume does "
                         "without it (the run's own backup)")
    record, resume_id = None, None
    if resume is not None:  # decided before any host is asked
        last, record = resumed_restore(cluster, resume)
        if record is None:
            nothing_to_do(f"nothing to resume: the last etcd restore (run {last['run_id']}, {last['workflow']}) finished")
            return
        resume_id = last["run_id"]
    elif not start_over:
        refuse_unfinished(cluster)
    with session(cluster, "etcd-restore") as (run_log, pool):
        plan, inp, planned = plan_restore(cluster, pool, source, directory=directory.absolute() if directory else None,
                                          passphrase=_passphrase(passphrase_file), resume=record)
        err = consoles()[1]
        err.print(f"{'resuming the restore of' if record else 'restoring'} {inp.backup_name} (verified here: sha256 "
                  f"{inp.snapshot_sha256[:16]}…) onto {', '.join(m.name for m in inp.members)}; old data dirs kept at "
                  f"{inp.aside}", markup=False)
        if record is None and not dry_run:
            planned.save(run_log.dir)  # beside the journal the run engine starts there
        run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock,
                 resume=resume_id, converged=ETCD_CONVERGED)


def run_members(inventory: Path, dry_run: bool, yes: bool, break_lock: bool = False) -> None:
    from kubeforge.execute.lock import clear_leftover
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.members import plan_members

    cluster = _load(inventory)
    with session(cluster, "etcd-members") as (run_log, pool):
        try:
            plan, change = plan_members(cluster, pool)
        except StackedEtcd as exc:
            nothing_to_do(str(exc))
            return
        if change.is_noop:
            if not dry_run:  # what the run engine does before it takes the lock
                clear_leftover(cluster.state_dir, pool)
            nothing_to_do("nothing to do: the cluster's members are the inventory's etcd hosts")
            return
        run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock, converged=ETCD_CONVERGED)


def run_upgrade(inventory: Path, target: str, dry_run: bool, yes: bool, *, allow_older_patch: bool = False,
                resume: str | None = None, break_lock: bool = False) -> None:
    from kubeforge.workflows.etcd.backup import options_from_cluster, take_backup
    from kubeforge.workflows.etcd.common import StackedEtcd
    from kubeforge.workflows.etcd.upgrade import plan_upgrade

    cluster = _load(inventory)
    with session(cluster, "etcd-upgrade") as (run_log, pool):
        def snapshot() -> bool:
            take_backup(cluster, pool, options_from_cluster(cluster))
            return True

        try:
            plan = plan_upgrade(cluster, pool, target, snapshot, allow_older_patch=allow_older_patch,
                                resume=resume is not None)
        except StackedEtcd as exc:
            nothing_to_do(str(exc))
            return
        report = run_plan(cluster, plan, pool, run_log, dry_run=dry_run, yes=yes, break_lock=break_lock,
                          resume=resume, converged=ETCD_CONVERGED)
        if not dry_run and report.outcome == "succeeded":
            consoles()[0].print(f"etcd runs {target} on every member; set etcd.version: {target} in {inventory} so that "
                      "`etcd install` and `up` keep it", markup=False)


def register(app: typer.Typer) -> None:
    @etcd_app.command("status")
    def status_cmd(inventory: Path = INVENTORY, output: Output = OUTPUT) -> None:
        """Members, leader, version, db size, raft index, health and alarms of every member.

        Read-only. Exit 4 when quorum is lost or any member is unhealthy (naming it), 5 when a
        member's machine cannot be reached.

        Example: kubeforge etcd status -i inventories/ha-external-etcd.yaml -o json
        """
        run_status(inventory)

    @etcd_app.command("install")
    def install_cmd(
        inventory: Path = INVENTORY,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = YES,
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
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
        directory: Path | None = typer.Option(None, "--dir", metavar="DIR", help="Where backups go (default: the inventory's etcd.backup.directory)."),
        keep: int | None = typer.Option(None, "--keep", metavar="N", help="Verified backups to keep (the newest is always kept)."),
        passphrase_file: Path | None = typer.Option(None, "--passphrase-file", metavar="FILE", help="Encrypt with the passphrase in this file."),
        output: Output = OUTPUT,
    ) -> None:
        """Snapshot a healthy member (a follower when possible), stream it here, verify it, keep N.

        A member that is down does not stop the backup. A file that fails verification goes to
        failed/ and is never counted. Exit 4 when no member is healthy or verification fails.

        Example: kubeforge etcd backup -i inventories/ha-external-etcd.yaml --keep 7
        """
        run_backup(inventory, directory, keep, passphrase_file)

    @etcd_app.command("restore")
    def restore_cmd(
        run: str | None = RUN_ARG,
        inventory: Path = INVENTORY,
        source: str | None = typer.Option(None, "--from", metavar="BACKUP", show_default=False,
                                          help="A backup manifest, a backup name, or 'latest' (with --resume: the run's own)."),
        directory: Path | None = typer.Option(None, "--dir", metavar="DIR", help="Where backups are (default: the inventory's)."),
        passphrase_file: Path | None = typer.Option(None, "--passphrase-file", metavar="FILE", help="Passphrase of an encrypted backup."),
        resume: bool = typer.Option(False, "--resume", help="Continue the unfinished restore in its journal (same backup)."),
        start_over: bool = typer.Option(False, "--start-over",
                                        help="Restore from the start although the last restore is unfinished."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = YES,
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
    ) -> None:
        """Restore every member from one verified backup (the old data dirs are kept aside).

        The backup is re-verified here first (manifest, checksum, integrity hash). Then: API servers
        stopped, etcd stopped everywhere, the snapshot pushed and checked on every member, restored
        with a new cluster token, all members started together, health gate, API servers back.
        An interrupted or failed restore is continued with --resume: same backup, same steps, and
        what it completed is not done again. Until then a new restore is refused (exit 7) unless
        --start-over says to restore from the start again.

        Example: kubeforge etcd restore -i inventories/ha-external-etcd.yaml --from latest --yes
        """
        from kubeforge.cli.common import resume_value

        run_restore(inventory, source, directory, passphrase_file, dry_run, yes, break_lock,
                    resume=resume_value(resume, run), start_over=start_over)

    @etcd_app.command("members")
    def members_cmd(
        inventory: Path = INVENTORY,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = YES,
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
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
        run: str | None = RUN_ARG,
        inventory: Path = INVENTORY,
        to: str = typer.Option(..., "--to", metavar="X.Y.Z", help="The etcd version to reach (X.Y.Z).", show_default=False),
        allow_older_patch: bool = typer.Option(
            False, "--allow-older-patch",
            help="Skip the latest-patch-first hop when the package source lacks it (never a hard floor or a minor)."),
        resume: bool = typer.Option(False, "--resume", help="Continue a failed or interrupted upgrade in its journal."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; change nothing."),
        yes: bool = YES,
        break_lock: bool = BREAK_LOCK,
        output: Output = OUTPUT,
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
