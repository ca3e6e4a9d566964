"""What the cluster says, read on the first control plane before planning.

- ``kubectl get nodes -o json``, parsed here once for every workflow (`up` reads labels and taints,
  `upgrade` reads cordon state and kubelet versions; both read Ready);
- the cluster probe (PROBE_SCRIPT): admin.conf, the node list, the CNI kubeforge applied, whether
  kubeadm finished `init`, the live bootstrap tokens -> ClusterState.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeforge.facts.script import split_sections
from kubeforge.model import Cluster
from kubeforge.model.kubeadm_paths import ADMIN_CONF, KUBECTL
from kubeforge.model.versions import KubeVersion, parse_kube
from kubeforge.transport.base import Command

log = logging.getLogger("kubeforge.facts")

CNI_MARKER = "/etc/kubeforge/cni-applied"  # sha256 of the CNI manifest `up` applied last

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
    why: str | None = None  # not Ready: its Ready condition's message (the kubelet's reason, or the API's)


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
        cond: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        ready = cond.get("status") == "True"
        out[name] = Node(
            name,
            ready=ready,
            why=None if ready else str(cond.get("message") or "no Ready condition reported"),
            labels=dict(meta.get("labels") or {}),
            taints=tuple(_taint_text(t) for t in spec.get("taints") or []),
            unschedulable=bool(spec.get("unschedulable")),
            kubelet=kube_version_in((status.get("nodeInfo") or {}).get("kubeletVersion")),
        )
    return out


@dataclass(frozen=True)
class ClusterState:
    """What the first control plane says about the cluster (read-only probe before planning)."""

    initialized: bool = False  # admin.conf exists there and the API answered
    nodes: Mapping[str, Node] = field(default_factory=dict)
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


# --- the cluster probe ------------------------------------------------------------------------------

_MARK = "@@kubeforge-cluster "
PROBE_SCRIPT = f"""echo '{_MARK}admin'
if [ -f {ADMIN_CONF} ]; then sha256sum {ADMIN_CONF} | cut -d' ' -f1; fi
echo '{_MARK}nodes'
if [ -f {ADMIN_CONF} ] && command -v kubectl >/dev/null 2>&1; then
  timeout 20 {KUBECTL} get nodes -o json 2>/dev/null || echo '#unreachable'
fi
echo '{_MARK}cni'
cat {CNI_MARKER} 2>/dev/null || true
echo '{_MARK}kubeadm-config'
if [ -f {ADMIN_CONF} ] && command -v kubectl >/dev/null 2>&1; then
  timeout 20 {KUBECTL} -n kube-system get configmap kubeadm-config -o name 2>/dev/null || echo '#absent'
fi
echo '{_MARK}tokens'
if [ -f {ADMIN_CONF} ] && command -v kubectl >/dev/null 2>&1; then
  timeout 20 {KUBECTL} -n kube-system get secrets -o name 2>/dev/null | grep '^secret/bootstrap-token-' || true
fi
"""


def split_probe(stdout: str) -> dict[str, str]:
    return {k: v.strip() for k, v in split_sections(stdout, _MARK).items()}


def parse_cluster_probe(stdout: str) -> ClusterState:
    """The probe script's output as a ClusterState; an API that does not answer is a ``problem``."""
    s = split_probe(stdout)
    admin = s.get("admin") or None
    cni = s.get("cni") or None
    nodes_text = s.get("nodes", "")
    if not admin:
        return ClusterState(cni_marker=cni)
    if not nodes_text or nodes_text.startswith("#unreachable"):
        return ClusterState(initialized=False, admin_conf_sha256=admin, cni_marker=cni,
                            problem="admin.conf exists but the API server did not answer")
    try:
        nodes = parse_nodes(nodes_text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return ClusterState(admin_conf_sha256=admin, cni_marker=cni, problem=f"unreadable node list ({exc.__class__.__name__})")
    if s.get("kubeadm-config", "").startswith("#absent"):
        # the API answers but kubeadm never uploaded its configuration: `kubeadm init` stopped half-way
        return ClusterState(initialized=False, nodes=nodes, admin_conf_sha256=admin, cni_marker=cni, init_incomplete=True)
    return ClusterState(initialized=True, nodes=nodes, admin_conf_sha256=admin, cni_marker=cni,
                        bootstrap_token_ids=live_token_ids(s.get("tokens")))


def live_token_ids(text: str | None) -> frozenset[str] | None:
    """The ids of the bootstrap tokens the cluster holds (one `secret/bootstrap-token-<id>` a line: the
    token cleaner deletes each Secret when its token expires); None when the probe did not list them."""
    if text is None:
        return None
    prefix = "secret/bootstrap-token-"
    return frozenset(line.strip()[len(prefix):] for line in text.splitlines() if line.strip().startswith(prefix))


def probe_cluster(cluster: Cluster, pool) -> ClusterState:
    """Read-only: what the first control plane's API says (nodes, Ready, labels, taints)."""
    first = cluster.first_control_plane
    res = pool.get(first.name).run(Command(script=PROBE_SCRIPT, sudo=True, check=False, timeout=60,
                                           description="read the cluster state"))
    state = parse_cluster_probe(res.stdout)
    if state.problem:
        log.warning("cluster state: %s", state.problem, extra={"host": first.name})
    return state
