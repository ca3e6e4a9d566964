"""What ``kubeforge bundle verify`` prints for people."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def bundle_summary(doc: dict[str, Any], console: Console) -> None:
    images = doc["images"]
    console.print(f"bundle {doc['bundle']}: ok, {size(doc['size'])} "
                  f"({doc['index']['packages']} packages {size(doc['index']['size'])}; "
                  + (f"{images['archives']} image archives {size(images['size'])})" if images else "no images/)"))
    table = Table(box=box.SIMPLE_HEAD, title="per Kubernetes version", title_justify="left")
    for col in ("version", "what", "count", "size", "missing (* only for some inventories)"):
        table.add_column(col, no_wrap=not col.startswith("missing"))
    for version, entry in doc["kubernetes"].items():
        table.add_row(version, "packages", str(len(entry["packages"])),
                      size(sum(p["size"] for p in entry["packages"])), "")
        if "imagesUnknown" in entry:
            table.add_row("", "images", "", "", entry["imagesUnknown"])
        for role, r in (entry.get("images") or {}).items():
            missing = [m.split(":")[0] + ("*" if " (" in m else "") for m in r["missing"]]
            table.add_row("", f"images: {role}", str(len(r["images"])), size(r["size"]), ", ".join(missing))
    console.print(table)
    if doc["otherPackages"]:
        console.print("other packages: " + ", ".join(f"{p['package']} {p['version']}" for p in doc["otherPackages"]))
    if doc["otherImages"]:
        console.print("images of no Kubernetes version above: " + ", ".join(i["ref"] for i in doc["otherImages"]))
    fetched = doc.get("fetched")
    if fetched:  # bundle create -i: where it all came from
        sources = sorted({i["from"] for i in fetched["images"]})
        console.print(f"fetched {len(fetched['images'])} images from {', '.join(sources) or '-'}; "
                      f"{len(fetched['packages']['debs'])} .debs from {fetched['packages']['from'] or '-'}"
                      + (f"; etcd {', '.join(fetched['etcd'])}" if fetched["etcd"] else ""))
