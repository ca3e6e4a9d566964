"""The node list as the API says (``kubectl get nodes -o json``), parsed once for every workflow,
on recorded outputs: Ready or not, cordoned, labels, taints, kubelet versions, garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.facts.cluster import Node, kube_version_in, parse_nodes
from kubeforge.model.versions import parse_kube

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
V134 = parse_kube("1.34.2")


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


def test_nodes_registered_before_the_cni_are_listed_not_ready_with_the_kubelets_reason():
    nodes = parse_nodes(fx("nodes", "not-ready"))
    assert sorted(nodes) == ["cp-1", "worker-1"]
    assert not any(n.ready for n in nodes.values())
    assert nodes["worker-1"].why.startswith("container runtime network not ready: NetworkReady=false")


def test_a_ready_cordoned_node_keeps_its_labels_taints_and_kubelet_version():
    nodes = parse_nodes(fx("nodes", "ready-cordoned"))
    assert nodes["cp-1"] == Node("cp-1", True,
                                 {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "cp-1"},
                                 ("node-role.kubernetes.io/control-plane:NoSchedule",), unschedulable=False, kubelet=V134)
    worker = nodes["worker-1"]
    assert worker.why is None
    assert worker.ready and worker.unschedulable and worker.labels["tier"] == "gold" and worker.taints == ()
    assert worker.kubelet == V134


def test_a_taint_with_a_value_reads_as_key_value_effect_and_one_node_alone_is_a_list_of_one():
    node = ('{"kind": "Node", "metadata": {"name": "w-1"}, "spec": {"taints": '
            '[{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}, "status": {}}')
    assert parse_nodes(node) == {"w-1": Node("w-1", False, {}, ("dedicated=db:NoExecute",), why="no Ready condition reported")}


@pytest.mark.parametrize("name", ["garbage", "truncated"])
def test_anything_but_a_node_list_is_a_value_error(name):
    with pytest.raises(ValueError):
        parse_nodes(fx("nodes", name))


def test_kubelet_and_package_version_strings_give_the_upstream_version():
    assert kube_version_in("v1.34.2") == V134
    assert kube_version_in("1.34.2-1.1") == V134
    assert kube_version_in("") is None and kube_version_in("unknown") is None
