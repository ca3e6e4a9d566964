"""Refusals before anything is touched (SafetyRefusal, exit 7), each saying where and what, and the
probes' parsers on recorded outputs (installed, removed, missing, garbage)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.cluster import Node
from kubeforge.plan.upgrade import (
    check_upgrade_safety,
)
from kubeforge.plan.upgrade.state import after_hop
from tests.unit.test_upgrade_planner import V133, V134, V135, cluster, facts_at


def refusal(c, facts, target, multi_hop=False) -> str:
    with pytest.raises(SafetyRefusal) as exc:
        check_upgrade_safety(c, facts, target, multi_hop=multi_hop)
    assert exc.value.exit_code == 7
    return exc.value.message


def test_skipping_a_minor_is_refused_without_multi_hop_and_the_message_names_the_hops():
    c = cluster()
    offered = replace(facts_at(c), offered=frozenset({V134, V135}))
    msg = refusal(c, offered, V135)
    assert "1.33.5 -> 1.35.1 skips minors" in msg and "1.34.2 -> 1.35.1" in msg and "--multi-hop" in msg
    assert check_upgrade_safety(c, offered, V135, multi_hop=True) == [V134, V135]


def test_a_downgrade_is_refused_naming_the_host_and_what_runs_there():
    c = cluster()
    msg = refusal(c, facts_at(c, worker_2=V135), V134)
    assert msg.startswith("worker-2 runs ") and "1.35.1 -> 1.34.2 is a downgrade" in msg


def test_a_notready_node_refuses_the_upgrade():
    c = cluster()
    f = facts_at(c)
    f = replace(f, nodes={**f.nodes, "worker-1": Node("worker-1", False, unschedulable=False, kubelet=V133)})
    assert refusal(c, f, V134) == "the cluster is not healthy: node worker-1 NotReady"


def test_an_unhealthy_etcd_member_refuses_the_upgrade():
    c = cluster()
    msg = refusal(c, replace(facts_at(c), etcd_problems=("etcd-2: connection refused",)), V134)
    assert msg == "the cluster is not healthy: etcd etcd-2: connection refused"


def test_a_host_without_facts_refuses_the_upgrade_naming_it():
    c = cluster()
    f = facts_at(c)
    f = replace(f, machines={k: v for k, v in f.machines.items() if k != "worker-2"}, unreachable={"worker-2": "connection timed out"})
    assert "worker-2: connection timed out" in refusal(c, f, V134)


def test_a_node_the_api_does_not_know_refuses_the_upgrade():
    c = cluster()
    f = facts_at(c)
    f = replace(f, nodes={k: v for k, v in f.nodes.items() if k != "worker-2"})
    assert refusal(c, f, V134) == "not nodes of the cluster yet: worker-2"


def test_an_api_that_does_not_answer_refuses_the_upgrade():
    c = cluster()
    msg = refusal(c, replace(facts_at(c), nodes={}, api_problem="connection refused"), V134)
    assert msg == "cannot read the cluster's nodes from cp-1: connection refused"


def test_a_version_the_package_source_does_not_offer_is_refused_listing_what_it_has():
    c = cluster()
    f = replace(facts_at(c), offered=frozenset({V133, V134}))
    msg = refusal(c, f, V135, multi_hop=True)
    assert msg == "the package source does not offer kubeadm 1.35.1 (it offers: 1.33.5, 1.34.2)"


def test_a_cluster_already_at_the_target_has_no_hops_left():
    c = cluster()
    assert check_upgrade_safety(c, facts_at(c, V134), V134, multi_hop=False) == []


def test_a_cluster_mid_upgrade_is_not_refused_for_the_skew_the_documented_order_creates():
    # cp-1's kubelet is newer than cp-2's API server: kubeadm's own order goes through this state.
    c = cluster()
    assert check_upgrade_safety(c, facts_at(c, cp_1=V134), V134, multi_hop=False) == [V134]


def test_the_projection_after_a_hop_puts_every_node_and_api_server_at_that_version():
    c = cluster()
    after = after_hop(facts_at(c), V134, [h.name for h in c.control_planes])
    assert check_upgrade_safety(c, after, V134, multi_hop=False) == []
    assert after.machines["cp-2"].apiserver == V134 and after.machines["worker-1"].apiserver is None
