"""What every lifecycle workflow does around its plan: facts, the live cluster state from the first
control plane, secrets and files resolved before planning; then the run engine
(kubeforge.execute.engine) over the very Plan that was shown and confirmed.

    facts = gather(cluster, pool)                         # read-only, every host in parallel
    state = probe_cluster(cluster, pool)                  # read-only, the first control plane
    run = execute(plan, site(cluster, pool, run_dir=..., log_path=...), options, confirm=..., events=...)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from kubeforge.errors import TransportError
from kubeforge.execute import Site
from kubeforge.facts import FactsError, HostFacts
from kubeforge.facts.cluster import parse_nodes
from kubeforge.model import Cluster
from kubeforge.model.files import file_sha256 as model_file_sha256
from kubeforge.model.kubeadm_paths import ADMIN_CONF, KUBECTL
from kubeforge.plan.up.context import CNI_MARKER, ClusterState
from kubeforge.transport.base import Command

log = logging.getLogger("kubeforge.workflows")

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


def reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    return {n: f for n, f in facts.items() if isinstance(f, HostFacts)}


def require_reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    down = [f for f in facts.values() if isinstance(f, FactsError)]
    if down:
        names = ", ".join(f.host for f in down)
        raise TransportError(names, f"{len(down)} host(s) gave no facts: {down[0].message}")
    return reached(facts)


def split_probe(stdout: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


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


def file_sha256(path: Path) -> str | None:
    """The local file's sha256, or None when it is not there."""
    try:
        return model_file_sha256(path)
    except FileNotFoundError:
        return None


def site(cluster: Cluster, pool, *, run_dir: Path | None, log_path: Path | None,
         lock_host: str | None = None) -> Site:
    """Where a run of this cluster happens: its state dir, its hosts, the cluster lock on the first
    control plane (unless ``lock_host`` names another), the journal beside the run's log."""
    return Site(cluster.state_dir, pool, lock_host or cluster.first_control_plane.name,
                run_dir=run_dir, log_path=log_path)
