"""The read-only probe of the first control plane, parsed: no admin.conf, an API that does not
answer, a node list, garbage."""

from __future__ import annotations

import json
from pathlib import Path

from kubeforge.facts.cluster import PROBE_SCRIPT, parse_cluster_probe
from kubeforge.model.versions import parse_kube

M = "@@kubeforge-cluster "
FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
NODES = {
    "kind": "List",
    "items": [
        {"kind": "Node", "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
         "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
         "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.5"}}},
        {"kind": "Node", "metadata": {"name": "worker-1", "labels": {"tier": "gold"}},
         "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]},
         "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
    ],
}


def out(admin="", nodes="", cni=""):
    return f"{M}admin\n{admin}\n{M}nodes\n{nodes}\n{M}cni\n{cni}\n"


def test_no_admin_conf_means_a_cluster_not_initialised_yet():
    state = parse_cluster_probe(out())
    assert not state.initialized and state.nodes == {} and state.problem is None


def test_an_api_that_does_not_answer_is_a_problem_not_an_empty_cluster():
    state = parse_cluster_probe(out(admin="ab" * 32, nodes="#unreachable"))
    assert not state.initialized and "did not answer" in state.problem


def test_nodes_ready_labels_and_taints_are_read_from_the_node_list():
    state = parse_cluster_probe(out(admin="ab" * 32, nodes=json.dumps(NODES, indent=2), cni="c" * 64))
    assert state.initialized and state.cni_marker == "c" * 64
    assert state.nodes["cp-1"].ready and not state.nodes["worker-1"].ready
    assert state.nodes["cp-1"].taints == ("node-role.kubernetes.io/control-plane:NoSchedule",)
    assert state.nodes["worker-1"].taints == ("dedicated=db:NoExecute",)
    assert state.nodes["worker-1"].labels == {"tier": "gold"}
    assert state.nodes["cp-1"].kubelet == parse_kube("1.33.5")


def test_a_garbled_node_list_is_reported_not_raised():
    state = parse_cluster_probe(out(admin="ab" * 32, nodes="{not json"))
    assert not state.initialized and "unreadable node list" in state.problem


def test_the_probe_only_reads():
    for verb in ("apply", "delete", "label", "taint", "rm ", "mv ", "systemctl", "> /"):
        assert verb not in PROBE_SCRIPT


def test_the_live_bootstrap_token_ids_are_read_and_an_older_probe_says_unknown():
    tokens = "secret/bootstrap-token-abcdef\nsecret/bootstrap-token-zyx987\n"
    state = parse_cluster_probe(out(admin="ab" * 32, nodes=json.dumps(NODES)) + f"{M}tokens\n{tokens}")
    assert state.bootstrap_token_ids == frozenset({"abcdef", "zyx987"})
    assert parse_cluster_probe(out(admin="ab" * 32, nodes=json.dumps(NODES)) + f"{M}tokens\n").bootstrap_token_ids == frozenset()
    assert parse_cluster_probe(out(admin="ab" * 32, nodes=json.dumps(NODES))).bootstrap_token_ids is None


def test_an_api_without_kubeadms_configuration_is_an_init_that_stopped_half_way():
    text = out(admin="ab" * 32, nodes=json.dumps(NODES)) + f"{M}kubeadm-config\n#absent\n"
    state = parse_cluster_probe(text)
    assert not state.initialized and state.init_incomplete and state.problem is None
    done = out(admin="ab" * 32, nodes=json.dumps(NODES)) + f"{M}kubeadm-config\nconfigmap/kubeadm-config\n"
    assert parse_cluster_probe(done).initialized and not parse_cluster_probe(done).init_incomplete


def test_the_recorded_probe_of_a_machine_without_admin_conf_is_a_cluster_not_initialised():
    text = (FIXTURES / "cluster_probe" / "runner.txt").read_text()
    state = parse_cluster_probe(text)
    assert not state.initialized and state.nodes == {} and state.problem is None
    assert state.admin_conf_sha256 is None and state.cni_marker is None


def test_a_recorded_node_list_in_the_probe_gives_the_nodes_and_an_initialised_cluster():
    nodes = (FIXTURES / "nodes" / "ready-cordoned.txt").read_text()
    state = parse_cluster_probe(out(admin="ab" * 32, nodes=nodes) + f"{M}kubeadm-config\nconfigmap/kubeadm-config\n{M}tokens\n")
    assert state.initialized and sorted(state.nodes) == ["cp-1", "worker-1"] and state.nodes["worker-1"].unschedulable
    assert state.bootstrap_token_ids == frozenset()
