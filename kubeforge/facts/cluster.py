"""What the cluster's API says about its nodes: ``kubectl get nodes -o json``, read once per run on
the first control plane and parsed here for every workflow (`up` reads labels and taints, `upgrade`
reads cordon state and kubelet versions; both read Ready)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeforge.model.versions import KubeVersion, parse_kube

_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")


def kube_version_in(text: str | None) -> KubeVersion | None:
    """The first ``x.y.z`` in a version string (``v1.34.2``, ``1.34.2-1.1``), or None."""
    if not text:
        return None
    m = _VERSION.search(text)
    return parse_kube(m.group(1)) if m else None


@dataclass(frozen=True)
class Node:
    """One node as the API server says."""

    name: str
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()  # "key=value:Effect" / "key:Effect"
    unschedulable: bool = False  # cordoned
    kubelet: KubeVersion | None = None  # the version the running kubelet reports


def _taint_text(t: Mapping[str, Any]) -> str:
    value = t.get("value")
    return f"{t.get('key')}{'=' + str(value) if value else ''}:{t.get('effect')}"


def parse_nodes(text: str) -> dict[str, Node]:
    """``kubectl get nodes -o json`` (a list, or one Node) -> Node by name; ValueError on anything else."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a node list")
    items = doc.get("items") or ([doc] if doc.get("kind") == "Node" else [])
    out: dict[str, Node] = {}
    for item in items:
        meta = item.get("metadata") or {}
        name = meta.get("name")
        if not name:
            continue
        spec, status = item.get("spec") or {}, item.get("status") or {}
        out[name] = Node(
            name,
            ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
            labels=dict(meta.get("labels") or {}),
            taints=tuple(_taint_text(t) for t in spec.get("taints") or []),
            unschedulable=bool(spec.get("unschedulable")),
            kubelet=kube_version_in((status.get("nodeInfo") or {}).get("kubeletVersion")),
        )
    return out
