"""What kubectl prints: Kubernetes-shaped JSON objects and tables built from the simulator's state."""

from __future__ import annotations

import base64
import datetime
import json

from . import yamlish

_NOT_READY_CNI = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                  "message:Network plugin returns error: cni plugin not initialized")


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def _ready_condition(st: dict, n: dict) -> dict:
    now = st["now"]
    if n.get("ready"):
        return {"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}
    if now - n.get("lastHeartbeat", 0) > 6:
        return {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status."}
    if not n.get("registered"):
        return {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "message": "kubelet version is newer than the API server; the node cannot register"}
    if n.get("runtimeProblem"):
        return {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": n["runtimeProblem"]}
    return {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": _NOT_READY_CNI}


def node_object(st: dict, n: dict) -> dict:
    ann = {"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock"}
    if n.get("apiserverVersion"):
        ann["kubesim.io/apiserver-version"] = n["apiserverVersion"]
    if n.get("kubeletConfigVersion"):
        ann["kubesim.io/kubelet-config-version"] = n["kubeletConfigVersion"]
    spec: dict = {}
    if n.get("unschedulable"):
        spec["unschedulable"] = True
    if n.get("taints"):
        spec["taints"] = n["taints"]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n["name"], "labels": n.get("labels", {}), "annotations": ann},
            "spec": spec,
            "status": {"conditions": [_ready_condition(st, n)],
                       "addresses": [{"type": "InternalIP", "address": n.get("internalIP")},
                                     {"type": "Hostname", "address": n["name"]}],
                       "nodeInfo": {"kubeletVersion": n["kubeletVersion"], "kubeProxyVersion": n["kubeletVersion"],
                                    "containerRuntimeVersion": "containerd://1.6.20", "osImage": "Debian GNU/Linux 12"}}}


def pod_object(st: dict, p: dict) -> dict:
    owner_kind = "ReplicaSet" if p["ownerKind"] == "Deployment" else p["ownerKind"]
    owner_name = p["name"].rsplit("-", 1)[0] if owner_kind == "ReplicaSet" else p["ownerName"]
    node = st["nodes"].get(p["node"] or "")
    phase = "Pending" if node is None else ("Running" if node.get("ready") else "Unknown")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p["name"], "namespace": p["namespace"], "labels": p["labels"],
                         "ownerReferences": [{"kind": owner_kind, "name": owner_name, "controller": True}]},
            "spec": {"nodeName": p["node"], "volumes": [{"name": "data", "emptyDir": {}}] if p["emptyDir"] else []},
            "status": {"phase": phase}}


def node_list(st: dict, names: list[str] | None = None) -> list[dict]:
    nodes = [n for k, n in sorted(st["nodes"].items()) if not names or k in names]
    return [node_object(st, n) for n in nodes]


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def secret_object(name: str, kind: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "namespace": "kube-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def dump(items: list[dict], output: str, kind: str, single: bool = False) -> str:
    doc = items[0] if single and items else {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}
    if output == "json":
        return json.dumps(doc, indent=4) + "\n"
    if output == "yaml":
        return yamlish.dump(doc)
    if output == "name":
        return "".join(f"{kind}/{i['metadata']['name']}\n" for i in items)
    raise ValueError(output)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "".join("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() + "\n" for r in rows)


def nodes_table(st: dict, nodes: list[dict], wide: bool) -> str:
    head = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] + (["INTERNAL-IP", "OS-IMAGE", "CONTAINER-RUNTIME"] if wide else [])
    rows = [head]
    for obj in nodes:
        n = st["nodes"][obj["metadata"]["name"]]
        status = {"True": "Ready"}.get(obj["status"]["conditions"][0]["status"], "NotReady")
        if n.get("unschedulable"):
            status += ",SchedulingDisabled"
        roles = ",".join(sorted(k.split("/", 1)[1] for k in n["labels"] if k.startswith("node-role.kubernetes.io/"))) or "<none>"
        row = [n["name"], status, roles, _age(st["now"] - n.get("joinedAt", st["now"])), n["kubeletVersion"]]
        if wide:
            row += [n.get("internalIP") or "<none>", "Debian GNU/Linux 12", "containerd://1.6.20"]
        rows.append(row)
    return table(rows)


def pods_table(st: dict, pods: list[dict], all_ns: bool, wide: bool) -> str:
    head = (["NAMESPACE"] if all_ns else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["NODE"] if wide else [])
    rows = [head]
    for p in pods:
        row = ([p["metadata"]["namespace"]] if all_ns else []) + [
            p["metadata"]["name"], "1/1" if p["status"]["phase"] == "Running" else "0/1", p["status"]["phase"], "0", "-"]
        if wide:
            row.append(p["spec"]["nodeName"] or "<none>")
        rows.append(row)
    return table(rows) if len(rows) > 1 else "No resources found\n"


def _kubeadm_config(st: dict) -> dict | None:
    """kube-system/kubeadm-config as kubeadm uploads it at init and re-uploads at `upgrade apply`:
    the ClusterConfiguration in that kubeadm's own config API (v1beta4 from kubeadm 1.31 on)."""
    if not st.get("initialized"):
        return None
    minor = int(str(st.get("clusterVersion") or "v1.0.0").lstrip("v").split(".")[1])
    cc = {"apiVersion": f"kubeadm.k8s.io/{'v1beta4' if minor >= 31 else 'v1beta3'}", "kind": "ClusterConfiguration",
          **{k: v for k, v in (st.get("clusterConfiguration") or {}).items() if k not in ("apiVersion", "kind")},
          "kubernetesVersion": st.get("clusterVersion")}
    return {"kind": "ConfigMap", "apiVersion": "v1", "name": "kubeadm-config", "namespace": "kube-system",
            "labels": {}, "annotations": {}, "data": {"ClusterConfiguration": yamlish.dump(cc)},
            "managedFields": [{"manager": "kubeadm", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1"}]}


def stored_objects(st: dict, group: str, kind: str) -> list[dict]:
    """The stored records of one kind (in any version of ``group``), kubeadm's ConfigMap included."""
    out = [o for o in st["objects"].values()
           if o["kind"] == kind and (o.get("apiVersion") or "v1").rpartition("/")[0] == group]
    if kind == "ConfigMap" and not group and "ConfigMap/kube-system/kubeadm-config" not in st["objects"]:
        cm = _kubeadm_config(st)
        out += [cm] if cm else []
    return sorted(out, key=lambda o: (o["namespace"], o["name"]))


def api_object(st: dict, o: dict, served_as: str) -> dict:
    """A stored record as the API server returns it: in ``served_as`` (its preferred version), with the
    metadata that records who wrote it in which version."""
    meta = {"name": o["name"], **({"namespace": o["namespace"]} if o["namespace"] else {})}
    for k in ("labels", "annotations", "managedFields"):
        if o.get(k):
            meta[k] = o[k]
    out = {"apiVersion": served_as, "kind": o["kind"], "metadata": meta}
    for k in ("spec", "status", "data"):
        if k in o:
            out[k] = o[k]
    return out
