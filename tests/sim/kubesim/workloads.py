"""Workloads inside the simulated cluster: applied objects, pods, scheduling, PDB-guarded eviction.

State is one JSON-able dict (see state.new_state); every function here mutates it in place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time

from . import apis
from .host import SimError

# seconds without a kubelet heartbeat before a node counts as NotReady (the real node-monitor-grace-period
# is 40 s against a 10 s status update; the lab compresses both, and a fleet lab of 100 light machines
# stretches them again: tests/lab/lab.py LIGHT_ENVIRONMENT)
HEARTBEAT_GRACE = float(os.environ.get("KUBESIM_HEARTBEAT_GRACE_SECONDS", "6"))
DEFAULT_GRACE = 30  # a pod's terminationGracePeriodSeconds when it names none (PodSpec default)
_CNI_NAMES = re.compile(r"calico|flannel|cilium|weave|canal|antrea|kube-router|kubesim-cni")
_STRUCTURED = {"Deployment", "DaemonSet", "PodDisruptionBudget", "Service"}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_WRITE_RECORD = ("annotations", "managedFields", "status")


def node_ready(st: dict, node: dict, now: float) -> bool:
    """The kubelet reports Ready only with its network plugin initialised, i.e. once a pod of the CNI's
    DaemonSet runs on this very node (the scheduler placed it there: it tolerates the node's taints)."""
    return bool(node.get("registered") and not node.get("runtimeProblem")
                and now - node.get("lastHeartbeat", 0) <= HEARTBEAT_GRACE and cni_pod_on(st, node["name"], now))


def cni_pod_on(st: dict, node: str, now: float) -> bool:
    return any(p["node"] == node and p["ownerKind"] == "DaemonSet" and not gone(p, now)
               and is_cni(st["objects"].get(f"DaemonSet/{p['namespace']}/{p['ownerName']}") or {})
               for p in st["pods"].values())


def _pod_template(obj: dict) -> dict:
    return _pod_spec((obj.get("spec") or {}).get("template") or {})


def _pod_spec(tpl: dict) -> dict:
    """What the rules need of a pod (a template's, or a bare Pod's own metadata and spec)."""
    spec = tpl.get("spec") or {}
    volumes = spec.get("volumes") or []
    return {
        "labels": dict(((tpl.get("metadata") or {}).get("labels")) or {}),
        "emptyDir": any(isinstance(v, dict) and "emptyDir" in v for v in volumes),
        "tolerations": list(spec.get("tolerations") or []),
        "grace": int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)),
    }


def grace_cap() -> float:
    """The simulator waits a pod's grace period out, bounded so tests stay short (the real kubelet
    waits the full period only for a container that ignores SIGTERM)."""
    return float(os.environ.get("KUBESIM_GRACE_CAP_SECONDS", "2"))


def _apply_pod(st: dict, raw: dict) -> str:
    """A bare Pod (no controller): bound to spec.nodeName, else scheduled; kept until deleted or evicted."""
    meta = raw.get("metadata") or {}
    ns, name = meta.get("namespace") or "default", meta["name"]
    key = f"{ns}/{name}"
    if key in st["pods"]:
        return f"pod/{name} unchanged"
    spec = _pod_spec(raw)
    st["pods"][key] = {"namespace": ns, "name": name, "node": (raw.get("spec") or {}).get("nodeName"),
                       "ownerKind": None, "ownerName": None, "labels": spec["labels"], "emptyDir": spec["emptyDir"],
                       "tolerations": spec["tolerations"], "grace": spec["grace"]}
    return f"pod/{name} created"


def _summarise(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "")
    out = {"kind": kind, "apiVersion": obj.get("apiVersion"), "name": meta.get("name"),
           "namespace": "" if kind in apis.CLUSTER_SCOPED else (meta.get("namespace") or "default"),
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
    elif kind == "CustomResourceDefinition":
        out["spec"] = {"group": spec.get("group"), "names": spec.get("names") or {}, "scope": spec.get("scope"),
                       "versions": [{k: v.get(k) for k in ("name", "served", "storage")}
                                    for v in spec.get("versions") or [] if isinstance(v, dict)]}
    elif kind == "ConfigMap":
        out["data"] = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    elif kind in ("ClusterRole", "Role"):  # what the RBAC authoriser reads (rbac.py)
        out["rules"] = [r for r in obj.get("rules") or [] if isinstance(r, dict)]
    elif kind in ("ClusterRoleBinding", "RoleBinding"):
        out["roleRef"] = dict(obj.get("roleRef") or {})
        out["subjects"] = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]
    return out


def is_cni(obj: dict) -> bool:
    return obj.get("kind") == "DaemonSet" and (
        obj["labels"].get("kubesim.io/cni") == "true" or bool(_CNI_NAMES.search(f"{obj['namespace']}/{obj['name']}")))


def _not_served(obj: dict, source: str) -> str:
    # kubectl's own words when discovery has no REST mapping for the object's kind and version
    return (f'error: resource mapping not found for name: "{obj["name"]}" namespace: "{obj["namespace"]}" '
            f'from "{source}": no matches for kind "{obj["kind"]}" in version "{obj["apiVersion"]}"\n'
            "ensure CRDs are installed first")


def _timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _record_write(new: dict, old: dict | None, raw: dict, now: float, server_side: bool) -> None:
    """What the API server and kubectl keep about who wrote an object, in which version: the
    last-applied annotation (client-side apply, and kept current by server-side apply once present) and
    metadata.managedFields. An Update entry is one per manager and apiVersion, so an object first
    written in an old version keeps that entry while its fields stay untouched; an Apply entry is one
    per manager whatever the version, and kubectl's server-side apply takes over the fields of its
    client-side entries."""
    annotations = dict(((raw.get("metadata") or {}).get("annotations")) or {})
    had_last = bool(old and LAST_APPLIED in (old.get("annotations") or {}))
    if not server_side or had_last:
        applied = json.loads(json.dumps(raw))
        (applied.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
        if not (applied.get("metadata") or {}).get("annotations"):
            (applied.get("metadata") or {}).pop("annotations", None)
        annotations[LAST_APPLIED] = json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"
    new["annotations"] = annotations
    fields = list((old or {}).get("managedFields") or [])
    entry = {"manager": "kubectl" if server_side else "kubectl-client-side-apply",
             "operation": "Apply" if server_side else "Update", "apiVersion": new["apiVersion"],
             "time": _timestamp(now), "fieldsType": "FieldsV1"}
    if server_side:
        fields = [f for f in fields if not (f["manager"] == "kubectl" and f["operation"] == "Apply")
                  and f["manager"] != "kubectl-client-side-apply"]
    else:
        fields = [f for f in fields if not (f["manager"] == entry["manager"] and f["operation"] == "Update"
                                            and f["apiVersion"] == entry["apiVersion"])]
    new["managedFields"] = fields + [entry]


def _stored_versions(new: dict, old: dict | None) -> None:
    """A CRD's status.storedVersions: every storage version objects may have been written in; the API
    server appends, never removes (the operator does, after migrating storage)."""
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    storage = [v["name"] for v in new["spec"]["versions"] if v.get("storage")]
    for v in storage[:1]:
        if v not in stored:
            stored.append(v)
    new["status"] = {"storedVersions": stored}


def _writers(obj: dict) -> list[tuple]:
    return sorted((f["manager"], f["operation"], f["apiVersion"]) for f in obj.get("managedFields") or [])


def apply(st: dict, objects: list[dict], now: float, *, minor: int | None = None, server_side: bool = False,
          source: str = "STDIN") -> list[str]:
    """kubectl apply: returns kubectl's per-object lines (created / configured / unchanged); an object
    in a version the API server of ``minor`` does not serve is not applied and gets kubectl's error
    line (starting with "error:") instead."""
    lines = []
    for raw in objects:
        if not isinstance(raw, dict) or not raw.get("kind") or not (raw.get("metadata") or {}).get("name"):
            raise SimError("error validating data: [apiVersion not set, kind not set] or metadata.name missing")
        if raw["kind"] == "Pod" and (raw.get("apiVersion") or "v1") == "v1":
            lines.append(_apply_pod(st, raw))
            continue
        obj = _summarise(raw)
        if minor is not None and not apis.serves(st, obj["apiVersion"] or "v1", obj["kind"], minor):
            lines.append(_not_served(obj, source))
            continue
        key = f"{obj['kind']}/{obj['namespace']}/{obj['name']}"
        old = st["objects"].get(key)
        kept = {k: v for k, v in (old or {}).items() if k not in _WRITE_RECORD}
        _record_write(obj, old, raw, now, server_side)
        if obj["kind"] == "CustomResourceDefinition":
            _stored_versions(obj, old)
        if old is not None and {k: v for k, v in obj.items() if k not in _WRITE_RECORD} == kept \
                and obj["annotations"] == old.get("annotations") and _writers(obj) == _writers(old):
            verb = "unchanged"  # a no-op write changes nothing, managedFields included
        else:
            verb = "created" if old is None else "configured"
            st["objects"][key] = obj
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
           "emptyDir": owner["template"]["emptyDir"], "tolerations": owner["template"]["tolerations"],
           "grace": owner["template"].get("grace", DEFAULT_GRACE)}
    st["pods"][f"{pod['namespace']}/{name}"] = pod
    return pod


def reconcile(st: dict, now: float) -> None:
    """The controllers: deployments keep replicas, daemonsets cover nodes, the scheduler binds pending pods."""
    nodes = st["nodes"]
    for key, pod in list(st["pods"].items()):
        if pod["node"] is not None and pod["node"] not in nodes:
            del st["pods"][key]  # node deleted: its pods are gone (controllers recreate them below)
        elif gone(pod, now):
            del st["pods"][key]  # its grace period is over
    for obj in st["objects"].values():
        # a terminating pod no longer counts: the ReplicaSet replaces it at once, as the real one does
        owned = [p for p in st["pods"].values() if p["ownerKind"] == obj["kind"] and p["ownerName"] == obj["name"]
                 and p["namespace"] == obj["namespace"] and "deleteAt" not in p]
        if obj["kind"] == "Deployment":
            for _ in range(obj["replicas"] - len(owned)):
                _new_pod(st, obj, None)
            for extra in sorted(owned, key=lambda p: p["name"])[obj["replicas"]:]:
                del st["pods"][f"{extra['namespace']}/{extra['name']}"]
        elif obj["kind"] == "DaemonSet":
            for p in owned:  # a NoExecute taint the pod does not tolerate evicts it (taint manager)
                n = nodes.get(p["node"] or "")
                if n is not None and not all(tolerates(p["tolerations"], t) for t in n.get("taints") or []
                                             if t.get("effect") == "NoExecute"):
                    del st["pods"][f"{p['namespace']}/{p['name']}"]
            covered = {p["node"] for p in owned if f"{p['namespace']}/{p['name']}" in st["pods"]}
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
            same = sum(1 for p in st["pods"].values() if p["node"] == n["name"] and p["ownerName"] == pod["ownerName"])  # noqa: B023 - used by min() in this iteration
            total = sum(1 for p in st["pods"].values() if p["node"] == n["name"])
            return same, total, n["name"]

        pod["node"] = min(candidates, key=load)["name"]


def _selected(pod: dict, selector: dict) -> bool:
    return all(pod["labels"].get(k) == v for k, v in selector.items())


def _amount(value, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


def gone(pod: dict, now: float) -> bool:
    return "deleteAt" in pod and pod["deleteAt"] <= now


def evict(st: dict, namespace: str, name: str, now: float, grace: int = -1) -> None:
    """The Eviction API: refuses (429) when a PodDisruptionBudget would be violated; otherwise the pod
    is terminating for its grace period (``grace`` ≥ 0 overrides the pod's, like DeleteOptions)."""
    key = f"{namespace}/{name}"
    pod = st["pods"].get(key)
    if pod is None or gone(pod, now):
        raise SimError(f'pods "{name}" not found', 404)
    if "deleteAt" in pod:
        return  # already terminating

    def healthy(p: dict) -> bool:
        n = st["nodes"].get(p["node"] or "")
        return n is not None and node_ready(st, n, now) and "deleteAt" not in p

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
    period = pod.get("grace", DEFAULT_GRACE) if grace < 0 else grace
    pod["deleteAt"] = now + min(float(period), grace_cap())
    reconcile(st, now)
