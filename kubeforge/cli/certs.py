"""``kubeforge certs check``: how long the cluster's certificates have left, from the local store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from kubeforge.model.cluster import Cluster

certs_app = typer.Typer(
    name="certs",
    help="Inspect the cluster's certificates.\n\nExample: kubeforge certs check -i inventory.yaml",
    no_args_is_help=True,
)

OUTPUTS = ("table", "json")


def check(
    cluster: "Cluster",
    *,
    within_days: int = 30,
    output: str = "table",
    now: datetime | None = None,
    console: "Console | None" = None,
) -> None:
    """Print the expiry report; raise CertificatesExpiring when something expires within the window.

    Reads the store only: a missing store is an error pointing at ``kubeforge render``.
    """
    from kubeforge.errors import CertificatesExpiring, UsageError
    from kubeforge.pki import expiring, expiry_report, load_pki

    if output not in OUTPUTS:
        raise UsageError(f"--output {output!r} is not one of {', '.join(OUTPUTS)}")
    if within_days < 0:
        raise UsageError("--within-days must be 0 or more")
    report = expiry_report(load_pki(cluster), now)
    soon = expiring(report, within_days)
    if output == "json":
        from kubeforge.ui.output import emit_json

        emit_json(
            {
                "cluster": cluster.name,
                "withinDays": within_days,
                "certificates": [s.to_json() | {"expiring": s.expires_within(within_days)} for s in report],
            },
            file=console.file if console else None,
        )
    else:
        _print_table(report, within_days, cluster.pki_dir, console)
    if soon:
        names = ", ".join(s.name for s in soon)
        raise CertificatesExpiring(
            f"{len(soon)} certificate{'s' if len(soon) != 1 else ''} expire within {within_days} days: {names}",
            hint="renew them before they expire (kubeforge never renews certificates silently)",
        )


def _print_table(report, within_days: int, pki_dir: Path, console: "Console | None") -> None:
    from rich import box
    from rich.table import Table

    from kubeforge.ui.console import make_console

    console = console or make_console()
    shown_dir = pki_dir
    if pki_dir.is_relative_to(Path.cwd()):
        shown_dir = pki_dir.relative_to(Path.cwd())
    table = Table(
        title=f"certificates in {shown_dir}/ (flagged: {within_days} days left or less)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    # Subjects and file paths are in --output json; the table keeps what fits 80 columns.
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("days left", justify="right", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    for s in report:
        # The word carries the verdict without colour (pipes, logs); colour only adds emphasis.
        if s.days_left < 0:
            status = "[bold red]EXPIRED[/]"
        elif s.expires_within(within_days):
            status = "[bold yellow]EXPIRING[/]"
        else:
            status = "ok"
        table.add_row(s.name, status, str(s.days_left), s.not_after.strftime("%Y-%m-%d %H:%M UTC"))
    console.print(table)


@certs_app.command("check")
def check_cmd(
    inventory: Path = typer.Option(..., "-i", "--inventory", help="The inventory file.", show_default=False),
    within_days: int = typer.Option(30, "--within-days", help="Fail (exit 9) when a certificate expires within N days."),
    output: str = typer.Option("table", "--output", "-o", help="table or json."),
) -> None:
    """Show every certificate in the local PKI store with its expiry; exit 9 if any expires soon.

    Example: kubeforge certs check -i inventories/ha-external-etcd.yaml --within-days 60
    """
    from kubeforge.inventory import load_cluster

    check(load_cluster(inventory), within_days=within_days, output=output)


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app, name="certs")
