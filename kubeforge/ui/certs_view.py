"""The table of ``kubeforge certs check``."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table


def certs_table(report, within_days: int, pki_dir: Path, console: Console) -> None:
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


def hosts_table(result, console: Console) -> None:
    """``certs check`` reading the hosts: one row per certificate found, then what differs."""
    table = Table(
        title=f"certificates on the hosts (flagged: {result.within_days} days left or less)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    # SANs, subjects and fingerprints are in --output json.
    for col in ("host", "certificate", "owner", "status", "days left", "issuer"):
        table.add_column(col, no_wrap=col != "certificate", justify="right" if col == "days left" else "left")
    for f in result.hosts.findings:
        c = f.cert
        if c.error:
            table.add_row(c.host, c.path, str(f.owner), "[bold red]UNREADABLE[/]", "", "")
            continue
        days = c.days_left(result.now)
        status = "[bold red]EXPIRED[/]" if days < 0 else "[bold yellow]EXPIRING[/]" if f.expiring else "ok"
        if f.store == "differs":
            status += " (not the store's)"
        table.add_row(c.host, c.path, str(f.owner), status, str(days), c.issuer.removeprefix("CN="))
    console.print(table)
    for line in result.hosts.differences:
        console.print(f"[yellow]differs:[/] {line}", highlight=False)
    for host in result.hosts.unreachable:
        console.print(f"[bold red]unreachable:[/] {host} (its certificates were not read)", highlight=False)
    soon = result.store_expiring
    if soon:
        console.print("local store, expiring: " + ", ".join(f"{s.name} ({s.days_left} days)" for s in soon),
                      highlight=False)
