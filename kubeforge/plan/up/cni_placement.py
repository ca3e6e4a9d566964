"""Whether the CNI manifest's DaemonSets can run on every node: a node turns Ready only once its network
plugin runs there, and the DaemonSet controller places a pod only on a node whose NoSchedule and
NoExecute taints its pod template tolerates (kubernetes.io/docs/concepts/scheduling-eviction/
taint-and-toleration; kubernetes.io/docs/concepts/workloads/controllers/daemonset — "Taints and
tolerations"). A manifest that does not tolerate a node's taints leaves that node NotReady forever.

Only a DaemonSet meant for the node counts: its ``nodeSelector`` is compared with the node's inventory
labels; selector keys under ``kubernetes.io/`` (os, arch, hostname) are the kubelet's own labels and
are taken to match. Node affinity is not evaluated (such a DaemonSet counts for every node). A manifest
that is not YAML, or has no DaemonSet, is not judged here: kubectl says what it thinks of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeforge.model import Taint

_BLOCKING = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class Untolerated:
    node: str
    taint: Taint
    daemonset: str  # "namespace/name"


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    """The scheduler's toleration match: an empty key with Exists tolerates everything; an effect,
    when given, must equal the taint's; Exists ignores the value, Equal (the default) compares it."""
    for t in tolerations:
        if not isinstance(t, Mapping):
            continue
        if t.get("effect") and t.get("effect") != taint.effect:
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t.get("key") != taint.key:
            continue
        if operator == "Exists" or str(t.get("value") or "") == (taint.value or ""):
            return True
    return False


def _daemonsets(text: str) -> list[Mapping[str, Any]]:
    from ruamel.yaml import YAML

    try:
        docs = list(YAML(typ="safe", pure=True).load_all(text))
    except Exception:  # noqa: BLE001 - any parse error: not ours to judge (kubectl apply reports it)
        return []
    out = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, Mapping) and doc.get("kind") == "List" else [doc]
        out += [d for d in items or [] if isinstance(d, Mapping) and d.get("kind") == "DaemonSet"]
    return out


def _spec(ds: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec if isinstance(spec, Mapping) else {}


def _meant_for(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = spec.get("nodeSelector") or {}
    return all(str(k).startswith("kubernetes.io/") or labels.get(str(k)) == str(v) for k, v in selector.items())


def untolerated(manifest: str, nodes: Mapping[str, tuple[Mapping[str, str], Iterable[Taint]]]) -> list[Untolerated]:
    """Each (node, taint, DaemonSet) where a DaemonSet of ``manifest`` meant for the node does not
    tolerate one of its NoSchedule/NoExecute taints. ``nodes``: name -> (labels, taints as registered,
    i.e. with the control-plane taint kubeadm adds)."""
    found = []
    for ds in _daemonsets(manifest):
        meta = ds.get("metadata") or {}
        name = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
        spec = _spec(ds)
        tolerations = spec.get("tolerations") or []
        for node, (labels, taints) in nodes.items():
            if not _meant_for(spec, labels):
                continue
            for taint in taints:
                if taint.effect in _BLOCKING and not tolerates(tolerations, taint):
                    found.append(Untolerated(node, taint, name))
                    break
    return found
