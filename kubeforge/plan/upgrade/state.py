"""What an upgrade is planned from: the versions every node runs, read before anything changes.

Two sources, because they can disagree in the middle of an upgrade and both matter:
- the machines: installed packages (kubeadm, kubelet, kubectl), apt holds, and on control planes the
  API server version in the static pod manifest (what ``kubeadm upgrade apply|node`` wrote);
- the cluster: ``kubectl get nodes -o json`` on the first control plane (Ready, cordoned, the
  version the running kubelet reports).

The probes and their parsers are in kubeforge.facts.upgrade (machines) and kubeforge.facts.cluster
(nodes); this module holds what the planner reads of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kubeforge.facts.cluster import Node
from kubeforge.facts.removed_apis import RemovedAPIScan
from kubeforge.facts.upgrade import COMPONENTS, NodeMachine
from kubeforge.model.versions import KubeVersion


@dataclass(frozen=True)
class UpgradeFacts:
    machines: Mapping[str, NodeMachine] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)  # from the API; empty if unknown
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
