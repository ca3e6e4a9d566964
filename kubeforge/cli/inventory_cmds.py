"""``kubeforge validate``, ``kubeforge schema`` and ``kubeforge init``: check an inventory, publish its
JSON Schema, start a new one."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.options import INVENTORY, OUTPUT, Output


def validate(
    inventory: Path = INVENTORY,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing when the inventory is valid."),
    output: Output = OUTPUT,
) -> None:
    """Check an inventory without touching any host: every problem at once, as file:line:col.

    Prints warnings and a one-line summary; exits 3 listing every problem when the inventory is invalid.

    Example: kubeforge validate -i inventories/ha-stacked-haproxy.yaml
    """
    from kubeforge.cli.common import consoles
    from kubeforge.inventory import load
    from kubeforge.inventory.summary import summary
    from kubeforge.model.secret import redact
    from kubeforge.ui.output import show

    result = load(inventory)
    cluster = result.cluster
    doc = {
        "file": str(inventory),
        "valid": True,
        "cluster": cluster.name,
        "summary": summary(cluster),
        "hosts": [{"name": h.name, "address": h.address, "roles": sorted(str(r) for r in h.roles)} for h in cluster.hosts],
        "warnings": [redact(str(w)) for w in result.warnings],
    }
    for w in result.warnings:
        typer.echo(redact(str(w)), err=True)
    show(doc, lambda: None if quiet else consoles()[0].print(doc["summary"], markup=False))


def schema(
    indent: int = typer.Option(2, "--indent", min=0, help="JSON indentation (0: one line)."),
    output: Output = OUTPUT,
) -> None:
    """Print the inventory's JSON Schema (draft 2020-12), for editors and CI linters.

    The table format is the schema as JSON; -o yaml prints it as YAML.

    Example: kubeforge schema > kubeforge.schema.json
    (then in VS Code's YAML extension: "# yaml-language-server: $schema=kubeforge.schema.json")
    """
    import json

    from kubeforge.inventory import json_schema
    from kubeforge.ui.output import show

    doc = json_schema()
    show(doc, lambda: typer.echo(json.dumps(doc, indent=indent or None, sort_keys=False)))


def init(
    host: list[str] | None = typer.Option(
        None, "--host", metavar="NAME=ADDRESS:ROLES",
        help="A host, e.g. cp-1=10.0.0.11:control-plane+etcd (roles joined by +); repeat for every host.",
    ),
    name: str = typer.Option("my-cluster", "--name", help="The cluster's name (metadata.name)."),
    kubernetes_version: str | None = typer.Option(
        None, "--kubernetes-version", metavar="X.Y.Z", help="Default: the newest version kubeforge supports."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="ADDRESS",
        help="The API endpoint's virtual IP or DNS name (HA clusters; default: a placeholder to edit)."),
    ssh_user: str = typer.Option("root", "--ssh-user", help="The SSH user (passwordless sudo when not root)."),
    path: Path = typer.Option(Path("inventory.yaml"), "--file", "-f", metavar="FILE", help="Where to write the inventory."),
    force: bool = typer.Option(False, "--force", help="Overwrite the file if it exists."),
    output: Output = OUTPUT,
) -> None:
    """Write a commented starter inventory for your hosts; it validates as written.

    Without --host, and on a terminal, asks for the hosts one by one. Roles: control-plane, etcd,
    worker, load-balancer. With several control planes and no etcd hosts, etcd is stacked on the
    control planes; with etcd hosts, it is external.

    Example: kubeforge init --host node-1=192.168.1.10:control-plane+worker
    Example: kubeforge init --name prod --host cp-1=10.0.0.11:control-plane --host cp-2=10.0.0.12:control-plane --host cp-3=10.0.0.13:control-plane --host w-1=10.0.0.21:worker --endpoint 10.0.0.100
    """
    import sys

    from kubeforge.cli.common import consoles
    from kubeforge.errors import UsageError
    from kubeforge.inventory.starter import StarterHost, write_starter
    from kubeforge.ui.output import show

    specs = list(host or [])
    if not specs:
        if not sys.stdin.isatty():
            raise UsageError("no hosts given", hint="pass --host NAME=ADDRESS:ROLES for every host (or run on a terminal)")
        specs = _ask_hosts(consoles()[1])
    hosts = [StarterHost.parse(s) for s in specs]
    written = write_starter(path, name=name, hosts=hosts, kubernetes_version=kubernetes_version, endpoint=endpoint,
                            ssh_user=ssh_user, force=force)
    doc = {"file": str(written.path), "cluster": name, "summary": written.summary,
           "hosts": [{"name": h.name, "address": h.address, "roles": list(h.roles)} for h in hosts],
           "next": f"kubeforge validate -i {written.path}"}
    out = consoles()[0]

    def table() -> None:
        out.print(f"wrote {written.path}: {written.summary}", markup=False)
        out.print(f"next: edit it, then {doc['next']}", markup=False)

    show(doc, table)


def _ask_hosts(console) -> list[str]:
    console.print("One host per line as NAME=ADDRESS:ROLES (roles joined by +), an empty line to finish.",
                  markup=False)
    import sys

    specs: list[str] = []
    while True:
        # the prompt on stderr, like every message: stdout stays for -o json|yaml
        console.print(f"host {len(specs) + 1}: ", end="", markup=False)
        line = sys.stdin.readline().strip()
        if not line:
            return specs
        specs.append(line)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("init")(init)
