"""Workloads inside the simulated cluster: applied objects, pods, scheduling, PDB-guarded eviction.

State is one JSON-able dict (see state.new_state); every function here mutates it in place.
"""

from __future__ import annotations

import hashlib
import math
import re

from .host import SimError

HEARTBEAT_GRACE = 6.0  # seconds without a kubelet heartbeat before a node counts as NotReady
_CNI_NAMES = re.compile(r"calico|flannel|cilium|weave|canal|antrea|kube-router|kubesim-cni")
_STRUCTURED = {"Deployment", "DaemonSet", "PodDisruptionBudget", "Service"}


def node_ready(st: dict, node: dict, now: float) -> bool:
    return bool(st.get("cni") and node.get("registered") and now - node.get("lastHeartbeat", 0) <= HEARTBEAT_GRACE)


def _pod_template(obj: dict) -> dict:
    tpl = ((obj.get("spec") or {}).get("template") or {})
    spec = tpl.get("spec") or {}
    volumes = spec.get("volumes") or []
    return {
        "labels": dict(((tpl.get("metadata") or {}).get("labels")) or {}),
        "emptyDir": any(isinstance(v, dict) and "emptyDir" in v for v in volumes),
        "tolerations": list(spec.get("tolerations") or []),
    }


def _summarise(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "")
    out = {"kind": kind, "apiVersion": obj.get("apiVersion"), "name": meta.get("name"),
           "namespace": meta.get("namespace") or ("" if kind in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                                                  "CustomResourceDefinition") else "default"),
           "labels": dict(meta.get("labels") or {})}
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "DaemonSet"):
        out["template"] = _pod_template(obj)
        if kind == "Deployment":
            out["replicas"] = int(spec.get("replicas", 1))
    elif kind == "PodDisruptionBudget":
        out["selector"] = dict(((spec.get("selector") or {}).get("matchLabels")) or {})
        for k in ("minAvailable", "maxUnavailable"):
            if k in spec:
                out[k] = spec[k]
    elif kind == "Service":
        out["spec"] = {"type": spec.get("type", "ClusterIP"), "selector": spec.get("selector") or {},
                       "ports": spec.get("ports") or []}
    return out


def is_cni(obj: dict) -> bool:
    return obj["kind"] == "DaemonSet" and (
        obj["labels"].get("kubesim.io/cni") == "true" or bool(_CNI_NAMES.search(f"{obj['namespace']}/{obj['name']}")))


def apply(st: dict, objects: list[dict], now: float) -> list[str]:
    """kubectl apply: returns kubectl's per-object lines (created / configured / unchanged)."""
    lines = []
    for raw in objects:
        if not isinstance(raw, dict) or not raw.get("kind") or not (raw.get("metadata") or {}).get("name"):
            raise SimError("error validating data: [apiVersion not set, kind not set] or metadata.name missing")
        obj = _summarise(raw)
        key = f"{obj['kind']}/{obj['namespace']}/{obj['name']}"
        old = st["objects"].get(key)
        verb = "created" if old is None else ("unchanged" if old == obj else "configured")
        st["objects"][key] = obj
        if is_cni(obj):
            st["cni"] = True
        lines.append(f"{obj['kind'].lower()}.{_group(obj)}/{obj['name']} {verb}")
    reconcile(st, now)
    return lines


def _group(obj: dict) -> str:
    av = obj.get("apiVersion") or "v1"
    return av.split("/")[0] if "/" in av else ""


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and not t.get("key"):
            return True
        if t.get("key") == taint.get("key") and (t.get("operator") == "Exists" or t.get("value") == taint.get("value")):
            return True
    return False


def _fits(node: dict, template: dict) -> bool:
    return all(tolerates(template["tolerations"], t) for t in node.get("taints") or [])


def _new_pod(st: dict, owner: dict, node: str | None) -> dict:
    st["seq"] = st.get("seq", 0) + 1
    h = hashlib.sha256(owner["name"].encode()).hexdigest()[:10]
    suffix = format(st["seq"], "05x")
    name = f"{owner['name']}-{suffix}" if owner["kind"] == "DaemonSet" else f"{owner['name']}-{h}-{suffix}"
    pod = {"namespace": owner["namespace"], "name": name, "node": node, "ownerKind": owner["kind"],
           "ownerName": owner["name"], "labels": dict(owner["template"]["labels"]),
           "emptyDir": owner["template"]["emptyDir"], "tolerations": owner["template"]["tolerations"]}
    st["pods"][f"{pod['namespace']}/{name}"] = pod
    return pod


def reconcile(st: dict, now: float) -> None:
    """The controllers: deployments keep replicas, daemonsets cover nodes, the scheduler binds pending pods."""
    nodes = st["nodes"]
    for key, pod in list(st["pods"].items()):
        if pod["node"] is not None and pod["node"] not in nodes:
            del st["pods"][key]  # node deleted: its pods are gone (controllers recreate them below)
    for obj in st["objects"].values():
        owned = [p for p in st["pods"].values() if p["ownerKind"] == obj["kind"] and p["ownerName"] == obj["name"]
                 and p["namespace"] == obj["namespace"]]
        if obj["kind"] == "Deployment":
            for _ in range(obj["replicas"] - len(owned)):
                _new_pod(st, obj, None)
            for extra in sorted(owned, key=lambda p: p["name"])[obj["replicas"]:]:
                del st["pods"][f"{extra['namespace']}/{extra['name']}"]
        elif obj["kind"] == "DaemonSet":
            covered = {p["node"] for p in owned}
            for name, node in sorted(nodes.items()):
                if name not in covered and node.get("registered") and _fits(node, obj["template"]):
                    _new_pod(st, obj, name)
    _schedule(st, now)


def _schedule(st: dict, now: float) -> None:
    for pod in sorted(st["pods"].values(), key=lambda p: p["name"]):
        if pod["node"] is not None:
            continue
        tpl = {"tolerations": pod["tolerations"]}
        candidates = [n for n in st["nodes"].values()
                      if node_ready(st, n, now) and not n.get("unschedulable") and _fits(n, tpl)]
        if not candidates:
            continue

        def load(n: dict) -> tuple:
            same = sum(1 for p in st["pods"].values() if p["node"] == n["name"] and p["ownerName"] == pod["ownerName"])
            total = sum(1 for p in st["pods"].values() if p["node"] == n["name"])
            return same, total, n["name"]

        pod["node"] = min(candidates, key=load)["name"]


def _selected(pod: dict, selector: dict) -> bool:
    return all(pod["labels"].get(k) == v for k, v in selector.items())


def _amount(value, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


def evict(st: dict, namespace: str, name: str, now: float) -> None:
    """The Eviction API: refuses (429) when a PodDisruptionBudget would be violated."""
    key = f"{namespace}/{name}"
    pod = st["pods"].get(key)
    if pod is None:
        raise SimError(f'pods "{name}" not found', 404)

    def healthy(p: dict) -> bool:
        n = st["nodes"].get(p["node"] or "")
        return n is not None and node_ready(st, n, now)

    for pdb in st["objects"].values():
        if pdb["kind"] != "PodDisruptionBudget" or pdb["namespace"] != namespace or not _selected(pod, pdb["selector"]):
            continue
        matching = [p for p in st["pods"].values() if p["namespace"] == namespace and _selected(p, pdb["selector"])]
        ok = [p for p in matching if healthy(p)]
        if "minAvailable" in pdb:
            allowed = len(ok) - _amount(pdb["minAvailable"], len(matching))
        else:
            allowed = _amount(pdb.get("maxUnavailable", 0), len(matching)) - (len(matching) - len(ok))
        if healthy(pod) and allowed < 1:
            raise SimError("Cannot evict pod as it would violate the pod's disruption budget.", 429)
    del st["pods"][key]
    reconcile(st, now)
