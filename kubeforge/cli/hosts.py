"""``kubeforge facts`` and ``kubeforge preflight``: what the hosts are, and whether they are fit."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.common import consoles, session
from kubeforge.cli.options import HOSTS, INVENTORY, OUTPUT, Output, split_hosts


def run_facts(inventory: Path, hosts: str | None) -> None:
    from kubeforge.errors import TransportError
    from kubeforge.facts import FactsError
    from kubeforge.inventory import load_cluster
    from kubeforge.ui.hosts_view import facts_table
    from kubeforge.ui.output import show
    from kubeforge.workflows.facts import collect_facts, select_hosts

    cluster = load_cluster(inventory)
    selected = [h.name for h in select_hosts(cluster, split_hosts(hosts))]
    with session(cluster, "facts") as (_, pool):
        facts = collect_facts(cluster, pool, hosts=selected)
    show(lambda: {name: f.to_dict() for name, f in facts.items()}, lambda: facts_table(facts, consoles()[0]))
    down = [f for f in facts.values() if isinstance(f, FactsError)]
    if down:
        names = ", ".join(f.host for f in down)
        raise TransportError(names, f"{len(down)} of {len(facts)} host(s) gave no facts: {down[0].message}")


def run_preflight_cmd(inventory: Path, hosts: str | None, probes: bool, max_clock_skew: float) -> None:
    from kubeforge.errors import CheckFailed, UsageError
    from kubeforge.inventory import load_cluster
    from kubeforge.ui.hosts_view import preflight_table
    from kubeforge.ui.output import show
    from kubeforge.workflows.facts import select_hosts
    from kubeforge.workflows.preflight import preflight, unreachable_hosts

    if max_clock_skew <= 0:
        raise UsageError("--max-clock-skew must be more than 0 seconds")
    cluster = load_cluster(inventory)
    selected = select_hosts(cluster, split_hosts(hosts))
    with session(cluster, "preflight") as (_, pool):
        report, _ = preflight(cluster, pool, hosts=selected, probes=probes, max_clock_skew_s=max_clock_skew)
    show(report.to_dict, lambda: preflight_table(report, consoles()[0]))
    if report.failed:
        raise CheckFailed(report.summary(), hint="fix the failures listed above; nothing was changed on any host",
                          unreachable=unreachable_hosts(report))


def register(app: typer.Typer) -> None:
    @app.command("facts")
    def facts_cmd(inventory: Path = INVENTORY, output: Output = OUTPUT, hosts: str | None = HOSTS) -> None:
        """Show what every host is: OS, kernel, CPUs, memory, disks, swap, installed versions, units.

        Read-only. Exit 5 when a host cannot be reached (the others are still shown).

        Example: kubeforge facts -i inventories/ha-external-etcd.yaml --hosts cp-1,cp-2 -o json
        """
        run_facts(inventory, hosts)

    @app.command("preflight")
    def preflight_cmd(
        inventory: Path = INVENTORY,
        output: Output = OUTPUT,
        hosts: str | None = HOSTS,
        probes: bool = typer.Option(
            True, "--probes/--no-probes", help="Run the etcd fsync and host-to-host connectivity probes."
        ),
        max_clock_skew: float = typer.Option(2.0, "--max-clock-skew", metavar="SECONDS",
                                             help="Seconds of clock skew between hosts that fail."),
    ) -> None:
        """Check every host before `up`: swap, kernel modules, sysctls, ports, CPU/RAM/disk per role,
        unique hostnames/product_uuid/MACs, clock skew, OS, etcd disk latency, connectivity.

        Changes nothing, except two short probes: a temporary file under the etcd data dir's
        filesystem (fsync latency) and listeners on role ports for at most 20 s (connectivity).
        Exit 4 when any check fails, 5 when a host cannot be reached.

        Example: kubeforge preflight -i inventories/ha-external-etcd.yaml
        """
        run_preflight_cmd(inventory, hosts, probes, max_clock_skew)
