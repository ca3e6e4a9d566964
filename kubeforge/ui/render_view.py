"""What ``kubeforge render`` wrote: files per host, and what changed in the PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def render_document(cluster_name: str, out_dir: Path, trees, pki,
                    images: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """``images``: host -> the image references it needs (kubeforge.model.images.images_by_host)."""
    return {
        "cluster": cluster_name,
        "outDir": str(out_dir),
        "hosts": [{"host": t.host, "files": t.files, "secrets": t.secrets, "bytes": t.bytes} for t in trees],
        "removed": sum(t.removed for t in trees),
        "pkiChanges": [str(c) for c in pki.changed],
        "images": images or {},
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
    _images(doc.get("images") or {}, console)
    if doc["pkiChanges"]:
        console.print("PKI changes:")
        for change in doc["pkiChanges"]:
            console.print(f"  {change}", markup=False)
    else:
        console.print("PKI: unchanged (every certificate and key reused)")


def _images(images: dict[str, list[str]], console: Console) -> None:
    """Hosts needing the same images share one entry: "cp-1, cp-2, cp-3: 8 images"."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for host, host_refs in images.items():
        groups.setdefault(tuple(host_refs), []).append(host)
    if not groups:
        return
    console.print("Container images per host:")
    for refs, group in groups.items():
        console.print(f"  {', '.join(group)}: {len(refs)} image{'s' if len(refs) != 1 else ''}", markup=False)
        for ref in refs:
            console.print(f"    {ref}", markup=False)
