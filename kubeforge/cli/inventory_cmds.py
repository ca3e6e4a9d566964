"""``kubeforge validate`` and ``kubeforge schema``: check an inventory, publish its JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer


def validate(
    inventory: Path = typer.Option(
        ..., "-i", "--inventory", help="The inventory file (apiVersion kubeforge.io/v1alpha1, kind Cluster)."
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing when the inventory is valid."),
) -> None:
    """Check an inventory without touching any host: every problem at once, as file:line:col.

    Prints warnings and a one-line summary; exits 3 listing every problem when the inventory is invalid.

    Example: kubeforge validate -i inventories/ha-stacked-haproxy.yaml
    """
    from kubeforge.inventory import load
    from kubeforge.inventory.summary import summary
    from kubeforge.model.secret import redact

    result = load(inventory)
    if quiet:
        return
    for w in result.warnings:
        typer.echo(redact(str(w)), err=True)
    typer.echo(summary(result.cluster))


def schema(
    indent: int = typer.Option(2, "--indent", min=0, help="JSON indentation (0: one line)."),
) -> None:
    """Print the inventory's JSON Schema (draft 2020-12), for editors and CI linters.

    Example: kubeforge schema > kubeforge.schema.json
    (then in VS Code's YAML extension: "# yaml-language-server: $schema=kubeforge.schema.json")
    """
    import json

    from kubeforge.inventory import json_schema

    typer.echo(json.dumps(json_schema(), indent=indent or None, sort_keys=False))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
