"""Tables for ``kubeforge etcd status`` and ``kubeforge etcd backup``. The status and backup objects
come from the etcd workflows; the UI only reads their fields."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def status_table(status, console: Console) -> None:
    table = Table(title="etcd", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("member", "endpoint", "health", "leader", "version", "db size", "raft index", "alarms"):
        table.add_column(col, no_wrap=col != "alarms")
    for m in status.members:
        health = "[green]healthy[/]" if m.healthy else f"[bold red]{escape(m.error or 'unhealthy')}[/]"
        role = "leader" if m.is_leader else ("learner" if m.is_learner else ("follower" if m.member_id else "-"))
        table.add_row(escape(m.name), escape(m.endpoint), health, role, escape(m.version or "-"), size(m.db_size),
                      str(m.raft_index) if m.raft_index is not None else "-", escape(", ".join(m.alarms) or "-"))
    console.print(table)
    leader = status.leader.name if status.leader else "none"
    console.print(f"{status.healthy_count}/{len(status.members)} healthy, quorum {status.quorum}, leader {leader}")


def backup_summary(result, console: Console) -> None:
    """One verified backup: what it holds, where it is, what retention deleted."""
    m = result.manifest
    for s in result.status.members:
        if not s.healthy:
            console.print(f"note: member {s.name} is not healthy ({s.error or 'unhealthy'}); backed up from {m.member}",
                          markup=False)
    rows = [
        ("backup", m.name), ("member", m.member), ("revision", str(m.revision)), ("keys", str(m.total_keys)),
        ("size", f"{size(m.size)} ({m.size} bytes)"), ("sha256", m.sha256),
        ("verification", "passed (checksum member = download, integrity hash, snapshot status)"),
        ("encrypted", m.encryption if m.encrypted else "no"), ("file", str(result.path)),
        ("manifest", str(result.manifest_path)), ("pki bundle", m.pki_bundle or "-"),
        ("deleted", ", ".join(result.deleted) or "-"), ("took", f"{result.timings.get('total', 0):.2f}s"),
    ]
    for k, v in rows:
        console.print(f"{k:>12}: {v}", markup=False)
