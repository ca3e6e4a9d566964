"""``kubeforge render``: every file of every host, written locally for review; no host is touched."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from kubeforge.model import Cluster, RenderedFile
    from kubeforge.pki import PkiResult


def render_inventory(cluster: "Cluster") -> tuple[dict[str, list["RenderedFile"]], "PkiResult"]:
    """Ensure the PKI and secrets in the local store, then render every host with its PKI files."""
    from kubeforge.pki import ensure_pki, ensure_secrets, host_files
    from kubeforge.render import render_cluster

    pki = ensure_pki(cluster)
    secrets = ensure_secrets(cluster)
    extra = {h.name: host_files(cluster, pki.bundle, h) for h in cluster.hosts}
    rendered = render_cluster(
        cluster, secrets=secrets, ca_cert_hash=pki.bundle.kube_ca_cert_hash, extra_files=extra
    )
    return rendered, pki


def render(
    inventory: Path = typer.Option(
        ..., "-i", "--inventory", help="The inventory file (apiVersion kubeforge.io/v1alpha1, kind Cluster)."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output-dir", help="Where to write one tree per host (default: <state dir>/rendered)."
    ),
) -> None:
    """Render every file kubeforge would place on every host, into one directory tree per host.

    Creates the cluster's CAs, certificates and bootstrap secrets in .kubeforge/<cluster>/pki on first
    use (reused afterwards). Files holding secrets are written 0600; nothing is sent to any host.

    Example: kubeforge render -i inventories/ha-external-etcd.yaml -o /tmp/rendered
    """
    from kubeforge.inventory import load
    from kubeforge.model.secret import redact
    from kubeforge.render.tree import write_tree

    result = load(inventory)
    for w in result.warnings:
        typer.echo(redact(str(w)), err=True)
    cluster = result.cluster
    rendered, pki = render_inventory(cluster)
    out_dir = output or (cluster.state_dir / "rendered")
    trees = write_tree(out_dir, rendered)
    _print_summary(cluster.name, out_dir, trees, pki)


def _print_summary(cluster_name: str, out_dir: Path, trees, pki) -> None:
    from rich.table import Table

    from kubeforge.ui.console import make_console

    console = make_console()
    table = Table(title=f"{cluster_name}: rendered into {out_dir}", title_justify="left")
    for col in ("host", "files", "secrets", "bytes"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for t in trees:
        table.add_row(t.host, str(t.files), str(t.secrets), str(t.bytes))
    table.add_row("total", str(sum(t.files for t in trees)), str(sum(t.secrets for t in trees)),
                  str(sum(t.bytes for t in trees)), style="bold")
    console.print(table)
    removed = sum(t.removed for t in trees)
    if removed:
        console.print(f"removed {removed} file{'s' if removed != 1 else ''} an earlier render produced")
    if pki.changed:
        console.print("PKI changes:")
        for change in pki.changed:
            console.print(f"  {change}")
    else:
        console.print("PKI: unchanged (every certificate and key reused)")


def register(app: typer.Typer) -> None:
    app.command("render")(render)
