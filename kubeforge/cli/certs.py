"""``kubeforge certs check``: how long the cluster's certificates have left, from the local store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kubeforge.cli.options import INVENTORY, OUTPUT, Output

if TYPE_CHECKING:
    from rich.console import Console

    from kubeforge.model.cluster import Cluster

certs_app = typer.Typer(
    name="certs",
    help="Inspect the cluster's certificates.\n\nExample: kubeforge certs check -i inventory.yaml",
    no_args_is_help=True,
)


def check(
    cluster: "Cluster",
    *,
    within_days: int = 30,
    output: str = "table",
    now: datetime | None = None,
    console: "Console | None" = None,
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


@certs_app.command("check")
def check_cmd(
    inventory: Path = INVENTORY,
    within_days: int = typer.Option(30, "--within-days", metavar="N",
                                    help="Fail (exit 9) when a certificate expires within N days."),
    output: Output = OUTPUT,
) -> None:
    """Show every certificate in the local PKI store with its expiry; exit 9 if any expires soon.

    Example: kubeforge certs check -i inventories/ha-external-etcd.yaml --within-days 60
    """
    from kubeforge.inventory import load_cluster

    from kubeforge.ui.output import current_format

    # the format --output set (the parameter itself is None under some typer/click pairs)
    check(load_cluster(inventory), within_days=within_days, output=current_format())


def register(app: typer.Typer) -> None:
    app.add_typer(certs_app, name="certs")
