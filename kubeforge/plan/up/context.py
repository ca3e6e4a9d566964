"""What the `up` phases read: the model, the facts, the rendered files, the live cluster state.

Everything here is resolved before planning (secrets, PKI, rendered files, a read-only probe of the
first control plane), so a phase is a pure function of this context and the plan is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeforge.facts import HostFacts
from kubeforge.model import Cluster, Host, RenderedFile
from kubeforge.render.record import RECORD_PATH

STAMP_DIR = "/etc/kubeforge/stamps"
CNI_DIR = "/etc/kubeforge/cni"
CNI_MARKER = "/etc/kubeforge/cni-applied"


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()  # "key=value:Effect" / "key:Effect"
    kubelet_version: str = ""


@dataclass(frozen=True)
class ClusterState:
    """What the first control plane says about the cluster (read-only probe before planning)."""

    initialized: bool = False  # admin.conf exists there and the API answered
    nodes: Mapping[str, NodeState] = field(default_factory=dict)
    admin_conf_sha256: str | None = None
    cni_marker: str | None = None  # sha256 of the CNI manifest applied last
    problem: str | None = None  # why the state could not be read (the API did not answer...)
    # admin.conf exists and the API answers, but kube-system/kubeadm-config does not: an earlier
    # `kubeadm init` stopped before it finished (its manifests, etcd data and ports would fail a rerun)
    init_incomplete: bool = False
    # ids of the bootstrap tokens the cluster holds now (expired ones are deleted); None: not read
    bootstrap_token_ids: frozenset[str] | None = None

    def has_node(self, name: str) -> bool:
        return name in self.nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "initialized": self.initialized,
            "nodes": {n: {"ready": s.ready, "labels": dict(s.labels), "taints": list(s.taints)} for n, s in self.nodes.items()},
            "cni_marker": self.cni_marker,
            "problem": self.problem,
        }


def _taint_text(t: Mapping[str, Any]) -> str:
    value = t.get("value")
    return f"{t.get('key')}{'=' + str(value) if value else ''}:{t.get('effect')}"


def parse_nodes(text: str) -> dict[str, NodeState]:
    """``kubectl get nodes -o json`` -> NodeState per name. Raises ValueError on garbage."""
    doc = json.loads(text)
    items = doc.get("items", [doc] if doc.get("kind") == "Node" else [])
    out: dict[str, NodeState] = {}
    for item in items:
        meta = item.get("metadata") or {}
        conditions = (item.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        taints = tuple(_taint_text(t) for t in (item.get("spec") or {}).get("taints") or [])
        info = (item.get("status") or {}).get("nodeInfo") or {}
        out[meta["name"]] = NodeState(meta["name"], ready, dict(meta.get("labels") or {}), taints, info.get("kubeletVersion", ""))
    return out


@dataclass(frozen=True)
class CniSource:
    """The CNI manifest: pushed bytes (a local file) or a URL kubectl fetches itself."""

    name: str
    content: bytes | None = None
    url: str | None = None

    @property
    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(self.content if self.content is not None else (self.url or "").encode()).hexdigest()


@dataclass(frozen=True)
class UpContext:
    cluster: Cluster
    facts: Mapping[str, HostFacts]
    files: Mapping[str, Sequence[RenderedFile]]  # every file of every host (render_cluster + PKI)
    state: ClusterState = field(default_factory=ClusterState)
    # the cluster lacks the local bootstrap token (it expired there, or was rotated here and never
    # created): create it before any join
    token_to_create: bool = False
    cni: CniSource | None = None
    local_admin_sha256: str | None = None  # of <state_dir>/admin.conf, None when absent
    gate_timeout_s: float = 300.0
    # SANs of /etc/kubernetes/pki/apiserver.crt on each control plane that has one (read before planning)
    apiserver_sans: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # per haproxy balancer, the API servers an interrupted run left drained there (read before planning)
    drained_backends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    # --- hosts -------------------------------------------------------------------------------------
    @property
    def first(self) -> Host:
        return self.cluster.first_control_plane

    def joined(self, host: Host) -> bool:
        """The host is a node of the cluster already: it holds kubelet.conf (when its facts were read),
        else the API knows it. A Node object alone is not enough: `kubeadm reset` wipes the machine
        but leaves its Node (NotReady), and such a host must join again."""
        f = self.facts.get(host.name)
        if f is not None:
            return bool(f.membership.kubelet_conf)
        return self.state.has_node(host.name)

    def prepared(self, host: Host) -> bool:
        """kubeforge applied this cluster's files to the host in an earlier run."""
        rec = self.record(host)
        return rec is not None and bool(rec) and rec.get("cluster") == self.cluster.name

    # --- files -------------------------------------------------------------------------------------
    def record(self, host: Host) -> Mapping[str, Any] | None:
        f = self.facts.get(host.name)
        return f.applied.record if f is not None else None

    def file(self, host: Host, path: str) -> RenderedFile | None:
        return next((f for f in self.files.get(host.name, ()) if f.path == path), None)

    def files_where(self, host: Host, wanted: Iterable[str] | None = None, *, prefix: str | None = None) -> list[RenderedFile]:
        paths = set(wanted) if wanted is not None else None
        out = []
        for f in self.files.get(host.name, ()):
            if f.path == RECORD_PATH:
                continue
            if paths is not None and f.path not in paths:
                continue
            if prefix is not None and not f.path.startswith(prefix):
                continue
            out.append(f)
        return out

    def pending(self, host: Host, files: Iterable[RenderedFile]) -> list[RenderedFile]:
        """The files whose content differs from what the host's applied.json records."""
        rec = self.record(host) if self.prepared(host) else None
        recorded = (rec or {}).get("files") or {}
        return [f for f in files if recorded.get(f.path) != f.sha256]
