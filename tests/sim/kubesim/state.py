"""The simulated cluster's rules: init, join, heartbeats, skew, upgrades, cordon, reset.

Every operation is ``fn(state, args, now) -> result`` over one JSON-able dict, run by the API server
inside one serialised read-modify-write. A refusal raises SimError; when ``record`` is set on it the
API server also appends it to ``state["violations"]`` (the real tool would have failed the same way).
"""

from __future__ import annotations

import os

from . import workloads
from .host import SimError, parse_version, vstr

CERTS_TTL = 7200.0  # kubeadm-certs Secret lifetime


def new_state() -> dict:
    return {"initialized": False, "clusterVersion": None, "nodes": {}, "pods": {}, "objects": {}, "tokens": {},
            "certs": None, "violations": [], "seq": 0, "history": []}


def cluster_time(st: dict, real: float) -> float:
    """The cluster's clock: the machine's plus the offset a test moved it by (op_clock_advance). Every
    rule that looks at time (token and uploaded-certs expiry, heartbeats, grace periods) reads this."""
    return real + float(st.get("clockOffset") or 0.0)


def op_clock_advance(st: dict, a: dict, now: float) -> dict:
    """The test clock: move the cluster's time forward (never back: expiry must stay monotonic), e.g.
    25 h so that a bootstrap token (24 h) and the uploaded certificates (2 h) have expired."""
    seconds = float(a.get("seconds") or 0)
    if seconds <= 0:
        raise SimError(f"the test clock only moves forward (asked to move by {seconds:g} s)")
    st["clockOffset"] = float(st.get("clockOffset") or 0.0) + seconds
    return {"clockOffset": st["clockOffset"], "now": now + seconds}


def op_clock_reset(st: dict, a: dict, now: float) -> dict:
    """Undo every op_clock_advance: the cluster's clock reads the machine's again. Every time the state
    holds moves back by the same offset, so what was measured so far stays as it was (a token with 3 h
    left keeps 3 h, a heartbeat 2 s old stays 2 s old) instead of lying a day in the future."""
    offset = float(st.get("clockOffset") or 0.0)
    for tok in (st.get("tokens") or {}).values():
        tok["expires"] -= offset
    if st.get("certs"):
        st["certs"]["expires"] -= offset
    for node in (st.get("nodes") or {}).values():
        for k in ("lastHeartbeat", "joinedAt"):
            if k in node:
                node[k] -= offset
    for pod in (st.get("pods") or {}).values():
        if "deleteAt" in pod:
            pod["deleteAt"] -= offset
    st["clockOffset"] = 0.0
    return {"clockOffset": 0.0, "now": now - offset}


def refuse(message: str, code: int = 400) -> SimError:
    e = SimError(message, code)
    e.record = True  # type: ignore[attr-defined]
    return e


# seconds: a heartbeat that changes nothing else is stored at most this often (each store rewrites the
# whole cluster document in etcd; light fleet machines store less often: tests/lab/lab.py)
HEARTBEAT_WRITE_EVERY = float(os.environ.get("KUBESIM_HEARTBEAT_WRITE_SECONDS", "2"))
MAX_RECORDS = 300


def violation(st: dict, now: float, node: str | None, message: str) -> None:
    for v in st["violations"]:
        if v["message"] == message:
            # a kubelet repeating the same refusal every heartbeat is one violation, counted
            v["count"] = v.get("count", 1) + 1
            v["lastTime"] = now
            return
    st["violations"].append({"time": now, "node": node, "message": message, "count": 1})
    del st["violations"][:-MAX_RECORDS]


def _event(st: dict, event: dict) -> None:
    st["history"].append(event)
    del st["history"][:-MAX_RECORDS]


def _minor(v: str) -> int:
    return parse_version(v)[1]


def _apiserver_versions(st: dict) -> list[str]:
    return [n["apiserverVersion"] for n in st["nodes"].values() if n.get("controlPlane") and n.get("apiserverVersion")]


def _register(st: dict, node: dict, now: float) -> dict:
    n = {"name": node["name"], "internalIP": node.get("ip"), "controlPlane": bool(node.get("controlPlane")),
         "kubeletVersion": node["kubeletVersion"], "labels": dict(node.get("labels") or {}),
         "taints": list(node.get("taints") or []), "unschedulable": False, "registered": True,
         "lastHeartbeat": now, "joinedAt": now}
    if n["controlPlane"]:
        n["apiserverVersion"] = node.get("apiserverVersion") or st["clusterVersion"]
        if node.get("unmarked"):  # a joining control plane: marked at the end of its join
            n["unmarked"] = True
        else:
            n["labels"].setdefault("node-role.kubernetes.io/control-plane", "")
    n["labels"].setdefault("kubernetes.io/hostname", node["name"])
    st["nodes"][node["name"]] = n
    workloads.reconcile(st, now)
    return n


def op_init(st: dict, a: dict, now: float) -> dict:
    if st["initialized"]:
        raise refuse(f"cluster is already initialised (first control plane {st.get('primaryNode')}); "
                     "kubeadm init runs once per cluster", 409)
    st.update(initialized=True, clusterVersion=a["version"], clusterName=a.get("clusterName", "kubernetes"),
              controlPlaneEndpoint=a.get("controlPlaneEndpoint"), etcd=a.get("etcd", "stacked"),
              primary=a.get("primary"), primaryNode=a["node"]["name"], caCertHash=a["caCertHash"],
              caCert=a.get("caCert"), clusterConfiguration=a.get("clusterConfiguration") or {})
    for t in a.get("tokens", []):
        st["tokens"][t["id"]] = {"hash": t["hash"], "expires": now + t["ttl"]}
    if a.get("certKeyHash"):
        st["certs"] = {"hash": a["certKeyHash"], "expires": now + CERTS_TTL}
    _event(st, {"time": now, "event": "init", "node": a["node"]["name"], "version": a["version"]})
    _register(st, {**a["node"], "controlPlane": True, "apiserverVersion": a["version"]}, now)
    return {"clusterVersion": a["version"]}


def op_token_create(st: dict, a: dict, now: float) -> dict:
    st["tokens"][a["id"]] = {"hash": a["hash"], "expires": now + a["ttl"]}
    return {}


def op_upload_certs(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise refuse("unable to upload certs: the cluster is not initialised", 404)
    st["certs"] = {"hash": a["certKeyHash"], "expires": now + CERTS_TTL}
    return {}


def op_upload_config(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise refuse("unable to upload the configuration: the cluster is not initialised", 404)
    st["clusterConfiguration"] = a.get("clusterConfiguration") or {}
    return {}


def op_discover(st: dict, a: dict, now: float) -> dict:
    """What `kubeadm join` learns from cluster-info before it trusts the cluster."""
    if not st["initialized"]:
        raise SimError("couldn't validate the identity of the API Server: cluster-info ConfigMap not found", 404)
    return {"clusterVersion": st["clusterVersion"], "caCert": st.get("caCert"), "etcd": st.get("etcd"),
            "primary": st.get("primary"), "controlPlaneEndpoint": st.get("controlPlaneEndpoint"),
            "clusterName": st.get("clusterName"), "clusterConfiguration": st.get("clusterConfiguration") or {},
            # where a joining stacked control plane finds the etcd members (kubeadm reads the etcd pods)
            "etcdEndpoints": [f"https://{ip}:2379" for ip in dict.fromkeys(
                [st.get("primary")] + [n.get("internalIP") for n in st["nodes"].values() if n.get("controlPlane")]) if ip]}


def op_join(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise SimError("couldn't validate the identity of the API Server: cluster-info ConfigMap not found", 404)
    tok = st["tokens"].get(a["tokenId"])
    if tok is None or tok["hash"] != a["tokenHash"] or tok["expires"] < now:
        raise refuse(f'couldn\'t validate the identity of the API Server: could not find a JWS signature in the '
                     f'cluster-info ConfigMap for token ID "{a["tokenId"]}"', 401)
    # kubeadm checks the CA certificates of cluster-info's kubeconfig against the pins: any one pinned
    keys = st.get("caCertHashes") or [st["caCertHash"]]
    if not a.get("unsafeSkipCAVerification") and not set(keys) & set(a.get("caCertHashes", [])):
        raise refuse(f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys '
                     f'"{", ".join(keys)}" are pinned', 401)
    name = a["node"]["name"]
    if a.get("controlPlane"):
        certs = st.get("certs")
        if not certs or certs["expires"] < now:
            raise refuse('error downloading the secret: Secret "kubeadm-certs" was not found in the "kube-system" '
                         'Namespace. This Secret might have expired. Please, run `kubeadm init phase upload-certs '
                         '--upload-certs` on a control plane to generate a new one', 404)
        if certs["hash"] != a.get("certKeyHash"):
            raise refuse("error downloading certs: error decoding secret data with provided key: "
                         "cipher: message authentication failed", 401)
    existing = st["nodes"].get(name)
    if existing and workloads.node_ready(st, existing, now):
        raise refuse(f'a Node with name "{name}" and status "Ready" already exists in the cluster. You must '
                     f'delete the existing Node or change the name of this new joining Node', 409)
    kv, cv = a["node"]["kubeletVersion"], st["clusterVersion"]
    if parse_version(kv)[:2] > parse_version(cv)[:2]:
        raise refuse(f'the kubelet version is higher than the control plane version. This is not a supported '
                     f'version skew and may lead to a malfunctional cluster. Kubelet version: "{kv}" '
                     f'Control plane version: "{cv}"')
    node = dict(a["node"], controlPlane=bool(a.get("controlPlane")))
    if node["controlPlane"]:
        node["apiserverVersion"] = cv
        # the kubelet registers the Node during the join; kubeadm marks it a control plane (label) only
        # in the join's last phase (op_mark_control_plane), after its etcd member and static pods run
        node["unmarked"] = bool(a.get("markLater"))
    _register(st, node, now)
    _event(st, {"time": now, "event": "join", "node": name, "controlPlane": node["controlPlane"]})
    return {"clusterVersion": cv}


def op_mark_control_plane(st: dict, a: dict, now: float) -> dict:
    """kubeadm join's last phase on a control plane (mark-control-plane): the node-role label. A join
    stopped before it leaves a Node the kubelet registered that is not marked a control plane."""
    node = st["nodes"].get(a["node"])
    if node is None:
        raise SimError(f'Error from server (NotFound): nodes "{a["node"]}" not found', 404)
    node["labels"]["node-role.kubernetes.io/control-plane"] = ""
    node.pop("unmarked", None)
    _event(st, {"time": now, "event": "mark-control-plane", "node": a["node"]})
    workloads.reconcile(st, now)
    return {}


def op_heartbeat(st: dict, a: dict, now: float) -> dict:
    node = st["nodes"].get(a["node"])
    if node is None:
        return {"known": False, "registered": False}
    if now - node.get("lastHeartbeat", 0) >= HEARTBEAT_WRITE_EVERY:
        node["lastHeartbeat"] = now
    node["kubeletVersion"] = a["kubeletVersion"]
    node["runtimeProblem"] = a.get("runtimeProblem")  # the kubelet's runtime check (kubesim/runtime.py)
    if node.get("controlPlane") and a.get("apiserverVersion"):
        node["apiserverVersion"] = a["apiserverVersion"]
    # a control plane's kubelet talks to its own API server; a worker's may reach any of them
    if node.get("controlPlane") and node.get("apiserverVersion"):
        api = node["apiserverVersion"]
    else:
        api = min(_apiserver_versions(st) or [st["clusterVersion"]], key=parse_version)
    kv = a["kubeletVersion"]
    if _minor(kv) > _minor(api):
        node["registered"] = False
        violation(st, now, a["node"], f"kubelet {kv} on node {a['node']} is newer than the API server {api}; "
                                      f"the kubelet refuses to register")
    else:
        node["registered"] = True
        if _minor(kv) < _minor(api) - 3:
            violation(st, now, a["node"], f"kubelet {kv} on node {a['node']} is more than 3 minors older "
                                          f"than the API server {api}")
    workloads.reconcile(st, now)
    return {"known": True, "registered": node["registered"]}


def op_kubelet_started(st: dict, a: dict, now: float) -> dict:
    node = st["nodes"].get(a["node"])
    _event(st, {"time": now, "event": "kubelet-start", "node": a["node"], "restart": a.get("restart"),
                          "version": a.get("kubeletVersion")})
    if node is None or not a.get("restart"):
        return {}
    busy = [p for p in st["pods"].values() if p["node"] == a["node"] and p["ownerKind"] != "DaemonSet"
            and not workloads.gone(p, now)]
    if not node.get("unschedulable") and busy:
        violation(st, now, a["node"], f"kubelet restarted on undrained node {a['node']}")
    return {}


def _check_upgrade_target(st: dict, target: str, kubeadm: str) -> None:
    t, k, c = parse_version(target), parse_version(kubeadm), parse_version(st["clusterVersion"])
    if t > k:
        raise refuse(f'Specified version to upgrade to "{vstr(t)}" is higher than the kubeadm version '
                     f'"{vstr(k)}". Upgrade kubeadm first using the tool you used to install kubeadm')
    if t != k:
        raise refuse(f'Specified version to upgrade to "{vstr(t)}" is not the kubeadm version "{vstr(k)}"; '
                     f'this kubeadm only upgrades the cluster to its own version')
    if t < c:
        raise refuse(f'Specified version to upgrade to "{vstr(t)}" is lower than the cluster version '
                     f'"{vstr(c)}". Downgrades are not supported yet')
    if t[:2] > (c[0], c[1] + 1):
        raise refuse(f'Specified version to upgrade to "{vstr(t)}" is too high; kubeadm can upgrade only 1 '
                     f'minor version at a time')
    old = sorted({n["kubeletVersion"] for n in st["nodes"].values() if _minor(n["kubeletVersion"]) < t[1] - 3})
    if old:
        raise refuse(f"There are kubelets in this cluster that are too old that have these versions {old}")


def op_upgrade_plan(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise SimError("the cluster is not initialised", 404)
    return {"clusterVersion": st["clusterVersion"],
            "nodes": {n: (v["kubeletVersion"], v.get("apiserverVersion")) for n, v in st["nodes"].items()}}


def op_upgrade_apply(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise refuse("the cluster is not initialised", 404)
    node = st["nodes"].get(a["node"])
    if node is None or not node.get("controlPlane"):
        raise refuse(f"node {a['node']} is not a control plane node: kubeadm upgrade apply runs on a control plane")
    _check_upgrade_target(st, a["version"], a["kubeadmVersion"])
    before = st["clusterVersion"]
    st["clusterVersion"] = a["version"]
    node["apiserverVersion"] = a["version"]
    _event(st, {"time": now, "event": "upgrade-apply", "node": a["node"], "from": before,
                          "to": a["version"]})
    return {"from": before, "to": a["version"]}


def op_upgrade_node(st: dict, a: dict, now: float) -> dict:
    if not st["initialized"]:
        raise refuse("the cluster is not initialised", 404)
    node = st["nodes"].get(a["node"])
    if node is None:
        raise refuse(f'nodes "{a["node"]}" not found', 404)
    cv, kv = st["clusterVersion"], a["kubeadmVersion"]
    if parse_version(kv) != parse_version(cv):
        raise refuse(f'kubeadm version "{kv}" differs from the cluster version "{cv}": run "kubeadm upgrade '
                     f'apply" on the first control plane before "kubeadm upgrade node", with matching kubeadm')
    if node.get("controlPlane"):
        node["apiserverVersion"] = cv
    node["kubeletConfigVersion"] = cv
    _event(st, {"time": now, "event": "upgrade-node", "node": a["node"], "to": cv})
    return {"clusterVersion": cv, "controlPlane": bool(node.get("controlPlane"))}


def _node(st: dict, name: str) -> dict:
    node = st["nodes"].get(name)
    if node is None:
        raise SimError(f'nodes "{name}" not found', 404)
    return node


def op_cordon(st: dict, a: dict, now: float) -> dict:
    node = _node(st, a["node"])
    changed = node.get("unschedulable", False) != a["unschedulable"]
    node["unschedulable"] = a["unschedulable"]
    _event(st, {"time": now, "event": "cordon" if a["unschedulable"] else "uncordon", "node": a["node"]})
    workloads.reconcile(st, now)
    return {"changed": changed}


def op_label(st: dict, a: dict, now: float) -> dict:
    node = _node(st, a["node"])
    for k, v in a.get("set", {}).items():
        if k in node["labels"] and node["labels"][k] != v and not a.get("overwrite"):
            raise SimError(f"'{k}' already has a value ({node['labels'][k]}), and --overwrite is false")
    node["labels"].update(a.get("set", {}))
    for k in a.get("remove", []):
        node["labels"].pop(k, None)
    return {}


def op_taint(st: dict, a: dict, now: float) -> dict:
    node = _node(st, a["node"])
    taints = node.setdefault("taints", [])
    for t in a.get("add", []):
        same = [x for x in taints if x["key"] == t["key"] and x.get("effect") == t.get("effect")]
        if same and not a.get("overwrite") and same[0] != t:
            raise SimError(f"node {a['node']} already has {t['key']} taint(s) with same effect(s) "
                           f"and --overwrite is false")
        taints[:] = [x for x in taints if x not in same] + [t]
    for t in a.get("remove", []):
        keep = [x for x in taints if not (x["key"] == t["key"] and (not t.get("effect") or x.get("effect") == t["effect"]))]
        if len(keep) == len(taints):
            raise SimError(f"taint \"{t['key']}\" not found")
        taints[:] = keep
    workloads.reconcile(st, now)
    return {}


def op_reset(st: dict, a: dict, now: float) -> dict:
    """`kubeadm reset` only records itself: the real one removes the local etcd member and wipes the
    machine but leaves the Node object (kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-reset:
    "kubectl delete node" is the operator's step). The stopped kubelet turns the node NotReady."""
    _event(st, {"time": now, "event": "reset", "node": a["node"]})
    return {}


def op_delete_node(st: dict, a: dict, now: float) -> dict:
    """`kubectl delete node`: the object goes; the pod garbage collector removes pods bound to it, so
    their controllers recreate them elsewhere."""
    if st["nodes"].pop(a["node"], None) is None:
        raise SimError(f'Error from server (NotFound): nodes "{a["node"]}" not found', 404)
    _event(st, {"time": now, "event": "delete-node", "node": a["node"]})
    workloads.reconcile(st, now)
    return {}


def op_apply(st: dict, a: dict, now: float) -> dict:
    # the minor of the API server that took the request decides which API versions are served
    minor = parse_version(a["serverVersion"])[1] if a.get("serverVersion") else None
    lines = workloads.apply(st, a["objects"], now, minor=minor, server_side=bool(a.get("serverSide")),
                            source=a.get("source") or "STDIN")
    for obj in a["objects"]:
        _cluster_info(st, obj)
    return {"lines": lines}


def _cluster_info(st: dict, obj: dict) -> None:
    """kube-public/cluster-info applied (a cluster CA rotation): join discovery hands out the CA
    certificates of its kubeconfig and checks the pins against them, as kubeadm reads that ConfigMap."""
    import base64
    import re

    from .pki import ca_cert_hash

    meta = obj.get("metadata") or {}
    if obj.get("kind") != "ConfigMap" or meta.get("name") != "cluster-info" or meta.get("namespace") != "kube-public":
        return
    m = re.search(r"certificate-authority-data:\s*(\S+)", str((obj.get("data") or {}).get("kubeconfig", "")))
    if m is None:
        return
    bundle = base64.b64decode(m.group(1)).decode()
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", bundle, re.S)
    if certs:
        st["caCert"], st["caCertHashes"] = bundle, [ca_cert_hash(c) for c in certs]


def op_evict(st: dict, a: dict, now: float) -> dict:
    workloads.evict(st, a["namespace"], a["name"], now, int(a.get("gracePeriod", -1)))
    return {}


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def view(st: dict, now: float) -> dict:
    """The state as clients see it: node readiness computed at this moment."""
    out = dict(st)
    out["nodes"] = {k: dict(v, ready=workloads.node_ready(st, v, now)) for k, v in st["nodes"].items()}
    out["pods"] = {k: p for k, p in st["pods"].items() if not workloads.gone(p, now)}
    # what `kubectl get secrets -n kube-system` shows of them: names and expiry, never the hashes; an
    # expired one is gone, as the token cleaner (and the garbage collector, for kubeadm-certs) deletes it
    out["bootstrapTokens"] = {i: t["expires"] for i, t in (st.get("tokens") or {}).items() if t["expires"] >= now}
    certs = st.get("certs")
    out["kubeadmCertsExpires"] = certs["expires"] if certs and certs["expires"] >= now else None
    out.pop("tokens", None)
    out.pop("certs", None)
    out["now"] = now
    return out
