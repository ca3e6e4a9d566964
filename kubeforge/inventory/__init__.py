"""The inventory: one YAML file -> a validated, frozen Cluster, or every problem at once.

    from kubeforge.inventory import load, load_cluster
    result = load(Path("inventories/single-node.yaml"))   # LoadResult(cluster, warnings)
    cluster = load_cluster("inventories/single-node.yaml")

Both raise kubeforge.errors.InventoryError carrying every problem (errors and warnings), sorted by
position, each shown as ``file:line:col: where: message``.
"""

from kubeforge.inventory.loader import LoadResult, load, load_cluster, loads  # noqa: F401
from kubeforge.inventory.schema import json_schema  # noqa: F401

__all__ = ["LoadResult", "load", "load_cluster", "loads", "json_schema"]
