"""Tables for ``kubeforge facts`` and ``kubeforge preflight``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from kubeforge.facts import FactsError, HostFacts
    from kubeforge.facts.preflight import PreflightReport

_MARK = {"pass": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f}G"


def facts_table(facts: Mapping[str, HostFacts | FactsError], console: Console) -> None:
    """The facts an operator looks at first; everything else is in ``--output json``."""
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
        if not isinstance(f, FactsError) and (edited := f.applied.edited_files()):
            console.print(escape(f"[{name}] changed on the host since kubeforge wrote them: {', '.join(edited)}"))


def preflight_table(report: PreflightReport, console: Console) -> None:
    """One row per host (fits any terminal however many checks there are), then every warning and
    failure with its message."""
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
