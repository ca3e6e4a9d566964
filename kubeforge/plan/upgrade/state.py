"""What an upgrade is planned from: the versions every node runs, read before anything changes.

Two sources, because they can disagree in the middle of an upgrade and both matter:
- the machines: installed packages (kubeadm, kubelet, kubectl), apt holds, and on control planes the
  API server version in the static pod manifest (what ``kubeadm upgrade apply|node`` wrote);
- the cluster: ``kubectl get nodes -o json`` on the first control plane (Ready, cordoned, the
  version the running kubelet reports).

Probes are read-only commands with pure parsers, like every fact in kubeforge.facts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kubeforge.facts.removed_apis import RemovedAPIScan
from kubeforge.model.kubeadm_paths import APISERVER_MANIFEST, KUBECTL
from kubeforge.model.versions import KubeVersion, Version, parse_kube
from kubeforge.transport.base import Command

COMPONENTS = ("kubeadm", "kubelet", "kubectl")

_MARK = "@@upgrade "
_IMAGE_TAG = re.compile(r"kube-apiserver:(v?\d+\.\d+\.\d+)")
_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")


def _version(text: str | None) -> KubeVersion | None:
    if not text:
        return None
    m = _VERSION.search(text)
    return parse_kube(m.group(1)) if m else None


@dataclass(frozen=True)
class NodeMachine:
    """One node as its machine says: packages, holds, API server manifest."""

    name: str
    packages: Mapping[str, KubeVersion] = field(default_factory=dict)  # component -> installed version
    held: frozenset[str] = frozenset()
    apiserver: KubeVersion | None = None  # control planes: the manifest's image tag

    def at(self, component: str, version: Version) -> bool:
        return self.packages.get(component) == version

    def installed_and_held(self, components: Iterable[str], version: Version) -> bool:
        return all(self.at(c, version) and c in self.held for c in components)


@dataclass(frozen=True)
class NodeStatus:
    """One node as the API server says."""

    name: str
    ready: bool
    unschedulable: bool = False
    kubelet: KubeVersion | None = None


@dataclass(frozen=True)
class UpgradeFacts:
    machines: Mapping[str, NodeMachine] = field(default_factory=dict)
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)  # from the API; empty if unknown
    api_problem: str | None = None  # why the cluster's view could not be read
    unreachable: Mapping[str, str] = field(default_factory=dict)  # host -> why
    etcd_problems: tuple[str, ...] = ()  # "etcd-2: connection refused"
    offered: frozenset[KubeVersion] | None = None  # kubeadm versions the package source offers; None: not checked
    removed_apis: RemovedAPIScan | None = None  # objects in API versions the path stops serving; None: not scanned
    offered_from: str = "the package source"  # which source said so (shown in the plan and refusals)
    etcd_versions: Mapping[str, str] = field(default_factory=dict)  # external etcd member -> version it runs
    # per haproxy balancer, the API servers an interrupted run left drained there
    drained_backends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def kubelet(self, name: str) -> KubeVersion | None:
        """The kubelet version that counts for skew: the running one (API) before the package."""
        node = self.nodes.get(name)
        if node is not None and node.kubelet is not None:
            return node.kubelet
        m = self.machines.get(name)
        return m.packages.get("kubelet") if m else None

    def to_dict(self) -> dict:
        return {
            "machines": {
                n: {
                    "packages": {c: str(v) for c, v in m.packages.items()},
                    "held": sorted(m.held),
                    "apiserver": str(m.apiserver) if m.apiserver else None,
                }
                for n, m in self.machines.items()
            },
            "nodes": {
                n: {"ready": s.ready, "unschedulable": s.unschedulable, "kubelet": str(s.kubelet) if s.kubelet else None}
                for n, s in self.nodes.items()
            },
            "api_problem": self.api_problem,
            "unreachable": dict(self.unreachable),
            "etcd_problems": list(self.etcd_problems),
            "offered": sorted(str(v) for v in self.offered) if self.offered is not None else None,
            "removed_apis": None if self.removed_apis is None else {
                "objects": [o.to_dict() for o in self.removed_apis.objects],
                "problems": list(self.removed_apis.problems),
            },
        }


# --- the machine probe -----------------------------------------------------------------------------

MACHINE_PROBE = f"""for p in {' '.join(COMPONENTS)}; do
  echo "{_MARK}pkg $p $(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Version}}' "$p" 2>/dev/null)"
done
echo "{_MARK}held $(dpkg --get-selections {' '.join(COMPONENTS)} 2>/dev/null | awk '$2 == "hold" {{ printf "%s ", $1 }}')"
echo "{_MARK}apiserver $(grep -o 'kube-apiserver:v[0-9][0-9.]*' {APISERVER_MANIFEST} 2>/dev/null | head -n 1)"
"""


def machine_probe() -> Command:
    return Command(script=MACHINE_PROBE, sudo=True, timeout=60, check=False, description="read Kubernetes package versions (read-only)")


def parse_machine(name: str, text: str) -> NodeMachine:
    packages: dict[str, KubeVersion] = {}
    held: set[str] = set()
    apiserver = None
    for line in text.splitlines():
        if not line.startswith(_MARK):
            continue
        kind, _, rest = line[len(_MARK):].partition(" ")
        if kind == "pkg":
            comp, _, status = rest.partition(" ")
            # "ii 1.34.2-1.1" installed, "hi" installed and held; "rc" (removed, config kept) or
            # nothing: not installed. The second letter is the package's state.
            parts = status.split()
            if len(parts) >= 2 and parts[0][1:2] == "i" and (v := _version(parts[1])):
                packages[comp] = v
        elif kind == "held":
            held.update(rest.split())
        elif kind == "apiserver":
            m = _IMAGE_TAG.search(rest)
            apiserver = _version(m.group(1)) if m else None
    return NodeMachine(name, packages, frozenset(held), apiserver)


# --- the cluster's view ----------------------------------------------------------------------------

def nodes_probe() -> Command:
    return Command(
        script=f"{KUBECTL} get nodes -o json",
        sudo=True,
        timeout=60,
        check=False,
        description="read the nodes from the API (read-only)",
    )


def parse_nodes(text: str) -> dict[str, NodeStatus]:
    """``kubectl get nodes -o json`` -> NodeStatus by name; ValueError on anything else."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a node list")
    out: dict[str, NodeStatus] = {}
    for item in doc.get("items") or []:
        name = (item.get("metadata") or {}).get("name")
        if not name:
            continue
        status = item.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        kubelet = _version((status.get("nodeInfo") or {}).get("kubeletVersion"))
        out[name] = NodeStatus(name, ready, bool((item.get("spec") or {}).get("unschedulable")), kubelet)
    return out


# --- what the package source offers ----------------------------------------------------------------

def offered_probe(sources_list: str) -> Command:
    """List the kubeadm versions the given apt sources offer, in a throw-away apt state directory:
    nothing under /etc/apt or /var/lib/apt changes, so planning stays read-only."""
    script = r"""d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
mkdir -p "$d/lists/partial"
cat > "$d/sources.list"
opts="-o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=$d/none -o Dir::State::Lists=$d/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root"
apt-get -q $opts update >"$d/update.log" 2>&1 || { cat "$d/update.log" >&2; exit 1; }
apt-cache $opts madison kubeadm
"""
    return Command(script=script, sudo=True, stdin=sources_list.encode(), timeout=120, check=False,
                   description="list the kubeadm versions the package source offers (read-only)")


def parse_madison(text: str) -> frozenset[KubeVersion]:
    """``   kubeadm | 1.34.2-1.1 | http://... Packages`` lines -> the upstream versions offered."""
    out = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0] == "kubeadm" and (v := _version(parts[1])):
            out.add(v)
    return frozenset(out)


# --- projection ------------------------------------------------------------------------------------

def after_hop(facts: UpgradeFacts, version: KubeVersion, control_planes: Iterable[str]) -> UpgradeFacts:
    """The facts as they will be once a hop to ``version`` has finished: used to show later hops
    of a multi-hop upgrade in the plan. Each hop is planned again from fresh facts before it runs."""
    cps = set(control_planes)
    machines = {
        n: replace(
            m,
            packages={c: version for c in COMPONENTS},
            held=frozenset(COMPONENTS) | m.held,
            apiserver=version if n in cps else m.apiserver,
        )
        for n, m in facts.machines.items()
    }
    nodes = {n: replace(s, kubelet=version, ready=True, unschedulable=False) for n, s in facts.nodes.items()}
    return replace(facts, machines=machines, nodes=nodes)
