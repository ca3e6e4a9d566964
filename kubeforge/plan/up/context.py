"""What the `up` phases read: the model, the facts, the rendered files, the live cluster state.

Everything here is resolved before planning (secrets, PKI, rendered files, a read-only probe of the
first control plane), so a phase is a pure function of this context and the plan is complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeforge.facts import HostFacts
from kubeforge.facts.cluster import CNI_MARKER, ClusterState  # noqa: F401  (CNI_MARKER: the phases' name for it)
from kubeforge.model import Cluster, Host, RenderedFile
from kubeforge.plan.etcd.membership import ListedMember
from kubeforge.render.record import RECORD_PATH

STAMP_DIR = "/etc/kubeforge/stamps"
# kubeadm join's last phase on a control plane (mark-control-plane) puts this label on its Node
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
CNI_DIR = "/etc/kubeforge/cni"


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
    # etcd's own member list (stacked etcd), read before planning when a control plane is half-joined;
    # None: not read
    etcd_members: tuple[ListedMember, ...] | None = None
    # per haproxy balancer, the API servers an interrupted run left drained there (read before planning)
    drained_backends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # With --resume: the step ids the interrupted run completed (its journal): a node it drained for
    # a runtime restart and never uncordoned gets its readiness gate and uncordon (restart_runtimes)
    journaled: frozenset[str] = frozenset()

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

    def half_joined(self, host: Host) -> bool:
        """A control plane whose `kubeadm join` stopped before its last phase (mark-control-plane): it
        holds kubelet.conf, but the API has no Node of it marked a control plane. What the join wrote
        (static Pod manifests, with stacked etcd a member added and its data) makes kubeadm's preflight
        refuse to join it again, and kubelet.conf would make kubeforge skip the join: it is reset and
        joins again (JoinControlPlanes)."""
        if not host.is_control_plane or host.name == self.first.name or not self.state.initialized:
            return False
        f = self.facts.get(host.name)
        if f is None or not f.membership.kubelet_conf:
            return False
        node = self.state.nodes.get(host.name)
        return node is None or CONTROL_PLANE_LABEL not in node.labels

    def needs_join(self, host: Host) -> bool:
        return not self.joined(host) or self.half_joined(host)

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

    def pending(self, host: Host, files: Iterable[RenderedFile], *, or_edited: bool = False) -> list[RenderedFile]:
        """The files whose content differs from what the host's applied.json records; ``or_edited``:
        also those whose copy on the host differs now (edited there since kubeforge wrote it)."""
        rec = self.record(host) if self.prepared(host) else None
        recorded = (rec or {}).get("files") or {}
        files = list(files)
        edited = {f.path for f in self.edited(host, files)} if or_edited else set()
        return [f for f in files if recorded.get(f.path) != f.sha256 or f.path in edited]

    def edited(self, host: Host, files: Iterable[RenderedFile]) -> list[RenderedFile]:
        """The files kubeforge recorded as written whose copy on the host is no longer the rendered one."""
        f_host = self.facts.get(host.name)
        if f_host is None or not self.prepared(host):
            return []
        return [f for f in files if f_host.applied.edited(f.path, f.sha256)]
