"""``kubeforge kubeconfig``: fetch or refresh the admin kubeconfig, or write one for a named user."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import consoles, session
from kubeforge.cli.options import INVENTORY, OUTPUT, Output


def run_kubeconfig(inventory: Path, *, out: Path | None, user: str | None, expires: str | None,
                   orgs: tuple[str, ...]) -> None:
    from kubeforge.inventory import load_cluster
    from kubeforge.ui.output import show
    from kubeforge.workflows.kubeconfig import fetch_kubeconfig

    cluster = load_cluster(inventory)
    with session(cluster, "kubeconfig") as (run_log, pool):
        result = fetch_kubeconfig(cluster, pool, out=out, user=user, expires=expires, orgs=orgs, run_dir=run_log.dir)

    def table() -> None:
        console = consoles()[0]
        console.print(f"kubeconfig of {result.user} for {result.server}: {result.path} (0600)", markup=False)
        if result.expires is not None:
            console.print(f"expires: {result.expires:%Y-%m-%d %H:%M UTC}", markup=False)
        console.print(f"use it: export KUBECONFIG={result.path}", markup=False)

    show(result.to_dict, table)


def register(app: typer.Typer) -> None:
    @app.command("kubeconfig")
    def kubeconfig_cmd(
        inventory: Path = INVENTORY,
        out: Path | None = typer.Option(
            None, "--out", metavar="FILE",
            help="Where to write it (default: .kubeforge/<cluster>/admin.conf, or users/<NAME>.conf with --user)."),
        user: str | None = typer.Option(
            None, "--user", metavar="NAME",
            help="Write a kubeconfig for this user (certificate CN), signed by the cluster CA, instead of the admin's."),
        expires: str | None = typer.Option(
            None, "--expires", metavar="DURATION", help="With --user: how long it is valid, e.g. 24h, 90m, 7d (default 24h)."),
        org: list[str] | None = typer.Option(
            None, "--org", metavar="GROUP", help="With --user: a group (certificate O) for RBAC; repeat for several."),
        output: Output = OUTPUT,
    ) -> None:
        """Fetch or refresh the admin kubeconfig from the first control plane, or have kubeadm there write
        one for a named user that expires.

        The file is written 0600 in a 0700 directory. A user's kubeconfig carries a client certificate
        (kubeadm kubeconfig user --client-name NAME --validity-period); grant it rights with RBAC.

        Example: kubeforge kubeconfig -i inventories/ha-external-etcd.yaml
        Example: kubeforge kubeconfig -i inventories/ha-external-etcd.yaml --user alice --org dev --expires 24h
        """
        run_kubeconfig(inventory, out=out, user=user, expires=expires, orgs=tuple(org or ()))
