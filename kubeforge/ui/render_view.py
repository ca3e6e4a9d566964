"""What ``kubeforge render`` wrote: files per host, and what changed in the PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def render_document(cluster_name: str, out_dir: Path, trees, pki) -> dict[str, Any]:
    return {
        "cluster": cluster_name,
        "outDir": str(out_dir),
        "hosts": [{"host": t.host, "files": t.files, "secrets": t.secrets, "bytes": t.bytes} for t in trees],
        "removed": sum(t.removed for t in trees),
        "pkiChanges": [str(c) for c in pki.changed],
    }


def render_summary(doc: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{doc['cluster']}: rendered into {doc['outDir']}", title_justify="left")
    for col in ("host", "files", "secrets", "bytes"):
        table.add_column(col, justify="left" if col == "host" else "right")
    hosts = doc["hosts"]
    for t in hosts:
        table.add_row(t["host"], str(t["files"]), str(t["secrets"]), str(t["bytes"]))
    table.add_row("total", *(str(sum(t[k] for t in hosts)) for k in ("files", "secrets", "bytes")), style="bold")
    console.print(table)
    removed = doc["removed"]
    if removed:
        console.print(f"removed {removed} file{'s' if removed != 1 else ''} an earlier render produced")
    if doc["pkiChanges"]:
        console.print("PKI changes:")
        for change in doc["pkiChanges"]:
            console.print(f"  {change}", markup=False)
    else:
        console.print("PKI: unchanged (every certificate and key reused)")
