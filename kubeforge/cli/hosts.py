"""``kubeforge facts`` and ``kubeforge preflight``: what the hosts are, and whether they are fit."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import typer
from kubeforge.cli.common import start_run_log

if TYPE_CHECKING:
    from rich.console import Console

    from kubeforge.facts import FactsError, HostFacts
    from kubeforge.facts.preflight import PreflightReport

OUTPUTS = ("table", "json")
_MARK = {"pass": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def _check_output(output: str) -> None:
    from kubeforge.errors import UsageError

    if output not in OUTPUTS:
        raise UsageError(f"--output {output!r} is not one of {', '.join(OUTPUTS)}")


def _split_hosts(hosts: str | None) -> list[str] | None:
    return None if hosts is None else [h.strip() for h in hosts.split(",") if h.strip()]


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f}G"


def facts_table(facts: Mapping[str, "HostFacts | FactsError"], console: "Console") -> None:
    """The facts an operator looks at first; everything else is in ``--output json``."""
    from rich.markup import escape
    from rich.table import Table

    from kubeforge.facts import FactsError

    table = Table(title="facts", title_justify="left")
    for col in ("host", "os", "cpu/mem", "free", "swap", "installed", "active"):
        table.add_column(col, no_wrap=col in ("host", "cpu/mem", "free", "swap"))
    for name, f in facts.items():
        if isinstance(f, FactsError):
            table.add_row(escape(name), f"[bold red]{escape(f.message)}[/]", *[""] * 5)
            continue
        var_lib = f.disks.for_path("/var/lib")
        swap = {None: "?", True: "[red]on[/]", False: "off"}[f.swap.enabled]
        installed = ", ".join(
            f"{c} {v}" for c in ("kubeadm", "kubelet", "kubectl", "containerd", "etcd") if (v := f.packages.version_of(c))
        )
        active = "?" if f.units.problem else ", ".join(u for u, st in f.units.states.items() if st.active == "active")
        os_ = f"{f.os.id or '?'} {f.os.version_id or ''} {f.arch or ''} {f.kernel or ''}".strip()
        table.add_row(
            escape(name),
            escape(os_),
            f"{f.cpus or '?'} / {_gib(f.memory.total_bytes)}",
            _gib(var_lib.available_bytes if var_lib else None),
            swap,
            escape(installed or "-"),
            escape(active or "-"),
        )
    console.print(table)
    for name, f in facts.items():
        for fact, problem in getattr(f, "problems", {}).items():
            console.print(escape(f"[{name}] {fact}: {problem}"))


def preflight_table(report: "PreflightReport", console: "Console") -> None:
    """One row per host (fits any terminal however many checks there are), then every warning and
    failure with its message."""
    from rich.markup import escape
    from rich.table import Table

    from kubeforge.facts.preflight import Status

    table = Table(title="preflight", title_justify="left")
    for col in ("host", "result", "failed", "warnings", "passed"):
        table.add_column(col, no_wrap=col in ("host", "result", "passed"))
    for host in report.hosts:
        rows = report.for_host(host)
        by = {s: sorted({r.check for r in rows if r.status is s}) for s in Status}
        table.add_row(
            escape(host),
            _MARK[report.status(host).value],
            escape(", ".join(by[Status.FAIL])) or "-",
            escape(", ".join(by[Status.WARN])) or "-",
            str(len(by[Status.PASS])),
        )
    console.print(table)
    for r in report.failures + report.warnings:
        console.print(f"{_MARK[r.status.value]} {escape(f'[{r.host}] {r.check}: {r.message}')}")
    console.print(report.summary())


def _emit(data: Any) -> None:
    from kubeforge.ui.output import emit_json

    emit_json(data)


def run_facts(inventory: Path, output: str, hosts: str | None) -> None:
    from kubeforge.errors import TransportError
    from kubeforge.facts import FactsError
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.console import make_console
    from kubeforge.workflows.facts import collect_facts, select_hosts

    _check_output(output)
    cluster = load_cluster(inventory)
    selected = [h.name for h in select_hosts(cluster, _split_hosts(hosts))]
    with start_run_log(cluster, "facts"), TransportPool(cluster) as pool:
        facts = collect_facts(cluster, pool, hosts=selected)
    if output == "json":
        _emit({name: f.to_dict() for name, f in facts.items()})
    else:
        facts_table(facts, make_console())
    down = [f for f in facts.values() if isinstance(f, FactsError)]
    if down:
        names = ", ".join(f.host for f in down)
        raise TransportError(names, f"{len(down)} of {len(facts)} host(s) gave no facts: {down[0].message}")


def run_preflight_cmd(inventory: Path, output: str, hosts: str | None, probes: bool, max_clock_skew: float) -> None:
    from kubeforge.errors import CheckFailed, UsageError
    from kubeforge.inventory import load_cluster
    from kubeforge.transport.pool import TransportPool
    from kubeforge.ui.console import make_console
    from kubeforge.workflows.facts import select_hosts
    from kubeforge.workflows.preflight import preflight

    _check_output(output)
    if max_clock_skew <= 0:
        raise UsageError("--max-clock-skew must be more than 0 seconds")
    cluster = load_cluster(inventory)
    selected = select_hosts(cluster, _split_hosts(hosts))
    with start_run_log(cluster, "preflight"), TransportPool(cluster) as pool:
        report, _ = preflight(cluster, pool, hosts=selected, probes=probes, max_clock_skew_s=max_clock_skew)
    if output == "json":
        _emit(report.to_dict())
    else:
        preflight_table(report, make_console())
    if report.failed:
        raise CheckFailed(report.summary(), hint="fix the failures listed above; nothing was changed on any host")


def register(app: typer.Typer) -> None:
    @app.command("facts")
    def facts_cmd(
        inventory: Path = typer.Option(..., "-i", "--inventory", help="The inventory file.", show_default=False),
        output: str = typer.Option("table", "--output", "-o", help="table or json."),
        hosts: str = typer.Option(None, "--hosts", help="Only these hosts (comma-separated names)."),
    ) -> None:
        """Show what every host is: OS, kernel, CPUs, memory, disks, swap, installed versions, units.

        Read-only. Exit 5 when a host cannot be reached (the others are still shown).

        Example: kubeforge facts -i inventories/ha-external-etcd.yaml --hosts cp-1,cp-2 -o json
        """
        run_facts(inventory, output, hosts)

    @app.command("preflight")
    def preflight_cmd(
        inventory: Path = typer.Option(..., "-i", "--inventory", help="The inventory file.", show_default=False),
        output: str = typer.Option("table", "--output", "-o", help="table or json."),
        hosts: str = typer.Option(None, "--hosts", help="Only these hosts (comma-separated names)."),
        probes: bool = typer.Option(
            True, "--probes/--no-probes", help="Run the etcd fsync and host-to-host connectivity probes."
        ),
        max_clock_skew: float = typer.Option(2.0, "--max-clock-skew", help="Seconds of clock skew between hosts that fail."),
    ) -> None:
        """Check every host before `up`: swap, kernel modules, sysctls, ports, CPU/RAM/disk per role,
        unique hostnames/product_uuid/MACs, clock skew, OS, etcd disk latency, connectivity.

        Changes nothing, except two short probes: a temporary file under the etcd data dir's
        filesystem (fsync latency) and listeners on role ports for at most 20 s (connectivity).
        Exit 4 when any check fails.

        Example: kubeforge preflight -i inventories/ha-external-etcd.yaml
        """
        run_preflight_cmd(inventory, output, hosts, probes, max_clock_skew)
