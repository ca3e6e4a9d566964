"""``kubeforge render``: every file of every host, written locally for review; no host is touched."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.options import INVENTORY, OUTPUT, Output


def render(
    inventory: Path = INVENTORY,
    out_dir: Path | None = typer.Option(
        None, "--out-dir", "-d", metavar="DIR",
        help="Where to write one tree per host (default: .kubeforge/<cluster>/rendered).",
    ),
    output: Output = OUTPUT,
) -> None:
    """Render every file kubeforge would place on every host, into one directory tree per host.

    Creates the cluster's CAs, certificates and bootstrap secrets in .kubeforge/<cluster>/pki on first
    use (reused afterwards). Files holding secrets are written 0600; nothing is sent to any host.

    Example: kubeforge render -i inventories/ha-external-etcd.yaml -d /tmp/rendered
    """
    from kubeforge.cli.common import consoles
    from kubeforge.inventory import load
    from kubeforge.model.images import images_by_host
    from kubeforge.model.secret import redact
    from kubeforge.ui.output import show
    from kubeforge.ui.render_view import render_document, render_summary
    from kubeforge.workflows.render import render_to

    result = load(inventory)
    for w in result.warnings:
        typer.echo(redact(str(w)), err=True)
    cluster = result.cluster
    images = {h: [i.ref for i in imgs] for h, imgs in images_by_host(cluster).items()}
    target, trees, pki = render_to(cluster, out_dir)
    doc = render_document(cluster.name, target, trees, pki, images=images)
    show(doc, lambda: render_summary(doc, consoles()[0]))


def register(app: typer.Typer) -> None:
    app.command("render")(render)
