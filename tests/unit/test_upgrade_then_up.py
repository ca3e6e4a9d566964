"""After a successful `upgrade`, `up` at the new version has nothing to do: every file a new minor
changes on a node is written by the upgrade (the runtime's inside the node's drain window), and the
record `up` trusts is rewritten. Planned from a cluster model at the new version and host facts as
the upgrade leaves them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kubeforge.facts.cluster import Node
from kubeforge.facts.types import Applied, Held, Packages
from kubeforge.facts.upgrade import NodeMachine
from kubeforge.model import CniSpec, Network
from kubeforge.model.versions import parse_kube
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.plan.up import ClusterState, UpContext, plan_up
from kubeforge.plan.up.context import CONTROL_PLANE_LABEL
from kubeforge.plan.upgrade import UpgradeFacts, plan_hop
from kubeforge.render.host_prep import CONTAINERD_PATH
from kubeforge.render.kubeadm import node_view
from kubeforge.render.record import RECORD_PATH
from tests.factories import make_cluster
from tests.unit.test_up_planner import CNI, converged_facts, resolve

OLD, NEW = parse_kube("1.33.5"), parse_kube("1.34.2")
KUBE = frozenset(("kubeadm", "kubelet", "kubectl"))


@pytest.fixture(scope="module")
def old_cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory.mktemp("upgrade-then-up"), version=str(OLD), etcd_version="3.4.23",
                     n_cp=2, n_workers=2)
    return dataclasses.replace(c, network=Network(cni=CniSpec(manifest="cni.yaml", name="kubesim-cni")))


def files_at(cluster, version):
    return resolve(dataclasses.replace(cluster, kubernetes_version=version))[1]


@pytest.fixture(scope="module")
def upgrade_plan(old_cluster):
    facts = UpgradeFacts(
        {h.name: NodeMachine(h.name, dict.fromkeys(KUBE, OLD), KUBE, OLD if h.is_control_plane else None)
         for h in old_cluster.nodes},
        {h.name: Node(h.name, True, unschedulable=False, kubelet=OLD) for h in old_cluster.nodes},
    )
    return plan_hop(old_cluster, facts, NEW, backup=lambda: None, node_files=lambda v: files_at(old_cluster, v))


def written(plan) -> dict[str, dict[str, str]]:
    """host -> path -> sha256 of every file the plan puts (the last put of a path wins)."""
    out: dict[str, dict[str, str]] = {}
    for phase in plan.phases:
        for step in phase.steps:
            if isinstance(step, PutFileStep):
                out.setdefault(step.host, {})[step.file.path] = step.file.sha256
    return out


def facts_after(cluster_new, files_new, host, plan):
    """The host as the upgrade leaves it: kube packages at NEW and held, its files and record as written."""
    f = converged_facts(cluster_new, files_new, host)
    record = json.loads(next(s.file.content for p in plan.phases for s in p.steps
                             if isinstance(s, PutFileStep) and s.host == host.name and s.file.path == RECORD_PATH))
    pkgs = dict(f.packages.packages)
    if host.is_control_plane or host.is_worker:
        pkgs.update({p: f"{NEW}-1.1" for p in KUBE})
    return dataclasses.replace(f, packages=Packages(packages=pkgs), held=Held(f.held.packages), applied=Applied(record=record))


def test_every_file_a_new_minor_changes_on_a_host_is_written_by_the_upgrade(old_cluster, upgrade_plan):
    before, after = files_at(old_cluster, OLD), files_at(old_cluster, NEW)
    puts = written(upgrade_plan)
    changed = {h: {f.path: f.sha256 for f in after[h] if f.sha256 not in {o.sha256 for o in before[h] if o.path == f.path}}
               for h in after}
    assert any(CONTAINERD_PATH in c for c in changed.values())  # the minor's pause image, say
    for host, files in changed.items():
        for path, sha in files.items():
            assert puts.get(host, {}).get(path) == sha, f"{host}: {path} is not written by the upgrade"


def test_the_runtime_config_is_written_and_containerd_restarted_inside_each_nodes_drain_window(old_cluster, upgrade_plan):
    for node in old_cluster.nodes:
        lane = [s for p in upgrade_plan.phases for lane in p.lanes for s in lane.steps
                if lane.host == node.name or (isinstance(s, RunStep) and node.name in s.title)]
        titles = [s.title for s in lane]
        drain = next(i for i, t in enumerate(titles) if t.startswith(f"Drain {node.name}"))
        back = next(i for i, t in enumerate(titles) if t == f"Uncordon {node.name} (kubectl on cp-1)")
        put = next(i for i, s in enumerate(lane) if isinstance(s, PutFileStep) and s.file.path == CONTAINERD_PATH)
        restart = next(i for i, t in enumerate(titles) if t.startswith("Restart containerd"))
        assert drain < put < restart < back, titles


def test_up_straight_after_the_upgrade_plans_zero_steps(old_cluster, upgrade_plan):
    new = dataclasses.replace(old_cluster, kubernetes_version=NEW)
    files = files_at(old_cluster, NEW)
    facts = {h.name: facts_after(new, files, h, upgrade_plan) for h in new.hosts}
    # control planes carry the label kubeadm's join (or init) marks them with
    nodes = {h.name: Node(h.name, True, {**h.labels, **({CONTROL_PLANE_LABEL: ""} if h.is_control_plane else {})},
                          tuple(str(t) for t in node_view(new, h).taints), kubelet=NEW)
             for h in new.nodes}
    state = ClusterState(initialized=True, nodes=nodes, admin_conf_sha256="ab" * 32, cni_marker=CNI.fingerprint)
    plan = plan_up(UpContext(new, facts, files, state, cni=CNI, local_admin_sha256="ab" * 32))
    assert [(p.name, [s.title for s in p.steps]) for p in plan.phases if not p.is_noop] == []


def test_a_converged_upgrade_rerun_plans_no_record_either(old_cluster):
    facts = UpgradeFacts(
        {h.name: NodeMachine(h.name, dict.fromkeys(KUBE, NEW), KUBE, NEW if h.is_control_plane else None)
         for h in old_cluster.nodes},
        {h.name: Node(h.name, True, unschedulable=False, kubelet=NEW) for h in old_cluster.nodes},
    )
    plan = plan_hop(old_cluster, facts, NEW, backup=lambda: None, node_files=lambda v: files_at(old_cluster, v))
    assert [p.name for p in plan.phases if not p.is_noop] == []
