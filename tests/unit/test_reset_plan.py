"""`reset`: which subsets are refused (quorum, the first control plane), and what the plan does."""

from __future__ import annotations

import json

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.model import EtcdTopology
from kubeforge.plan.etcd.membership import quorum
from kubeforge.plan.reset import ResetContext, node_absent, plan_reset
from kubeforge.plan.reset.safety import check_reset_selection
from tests.factories import make_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("reset"), n_etcd=3, n_cp=3, n_workers=2)


def ctx(cluster, names, *, purge=False, reachable=True):
    return ResetContext(cluster, cluster.select(names), purge, "20261122T080000Z", reachable)


def phase(plan, name):
    return next(p for p in plan.phases if p.name == name)


@pytest.mark.parametrize("members,quorum_size", [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_quorum_is_a_strict_majority(members, quorum_size):
    assert quorum(members) == quorum_size


def test_resetting_two_of_three_etcd_members_is_refused_naming_them_and_the_quorum(cluster):
    with pytest.raises(SafetyRefusal) as e:
        check_reset_selection(cluster, cluster.select(["etcd-1", "etcd-2"]))
    assert "etcd-1, etcd-2" in e.value.message and "quorum (2)" in e.value.message


def test_resetting_one_of_three_etcd_members_keeps_quorum_and_is_allowed(cluster):
    check_reset_selection(cluster, cluster.select(["etcd-3"]))


def test_the_first_control_plane_is_reset_only_with_the_whole_cluster(cluster):
    with pytest.raises(SafetyRefusal, match="cp-1 is the first control plane"):
        check_reset_selection(cluster, cluster.select(["cp-1"]))
    check_reset_selection(cluster, cluster.hosts)


def test_stacked_control_planes_are_etcd_members_for_the_quorum_rule(tmp_path):
    stacked = make_cluster(tmp_path, topology=EtcdTopology.STACKED, n_cp=3, n_workers=1)
    with pytest.raises(SafetyRefusal, match="quorum"):
        check_reset_selection(stacked, stacked.select(["cp-2", "cp-3"]))


def test_resetting_one_worker_resets_it_and_deletes_its_node_from_the_first_control_plane(cluster):
    plan = plan_reset(ctx(cluster, ["worker-2"]))
    assert {s.host for s in plan.steps} == {"worker-2", "cp-1"}
    assert "kubeadm reset -f" in phase(plan, "ResetNodes").steps[0].command.script
    delete = phase(plan, "RemoveNodeObjects").steps[0]
    assert delete.host == "cp-1" and "delete node worker-2" in delete.command.script
    # skipped only on the API's NotFound (tests/unit/test_sim_cli.py runs this guard against the simulator)
    assert delete.unless == node_absent("worker-2") and "(NotFound)" in delete.unless.script
    assert phase(plan, "StopEtcd").is_noop
    removed = phase(plan, "RemoveKubeforgeFiles").steps[0].command.script
    for path in ("/etc/kubeforge", "/etc/kubernetes", "/etc/apt/preferences.d/kubeforge-kubernetes"):
        assert path in removed


def test_etcd_data_is_moved_aside_by_default_and_deleted_only_with_purge(cluster):
    kept = phase(plan_reset(ctx(cluster, [h.name for h in cluster.hosts])), "StopEtcd")
    script = kept.steps[0].command.script
    assert "mv -- /var/lib/etcd /var/lib/etcd.kubeforge-reset-20261122T080000Z" in script and "rm -rf" not in script
    purged = phase(plan_reset(ctx(cluster, [h.name for h in cluster.hosts], purge=True)), "StopEtcd")
    assert "rm -rf -- /var/lib/etcd" in purged.steps[0].command.script


def test_a_whole_cluster_reset_deletes_no_node_objects_and_its_plan_round_trips_as_json(cluster):
    plan = plan_reset(ctx(cluster, [h.name for h in cluster.hosts], reachable=False))
    assert phase(plan, "RemoveNodeObjects").reason == "the whole cluster is reset"
    doc = json.loads(json.dumps(plan.to_dict()))
    assert [p["name"] for p in doc["phases"]] == [p.name for p in plan.phases]


def test_a_stacked_control_planes_reset_removes_its_etcd_member_from_the_first_control_plane_if_still_listed(tmp_path):
    # kubeadm reset only warns when etcd refuses its member removal; kubeforge makes sure
    stacked = make_cluster(tmp_path, topology=EtcdTopology.STACKED, n_cp=3, n_workers=1)
    step = phase(plan_reset(ctx(stacked, ["cp-3"])), "RemoveEtcdMembers").steps[0]
    script = step.command.script
    assert step.host == "cp-1" and "'$4 == u'" in script and "13:2380" in script and 'member remove "$id"' in script
    assert "set -o pipefail" in script and "unhealthy cluster" in script  # a failed list is no "absent"
    endpoints = [u for u in script.split() if u.startswith("--endpoints=")][0]
    assert "11:2379" in endpoints and "12:2379" in endpoints and "13:2379" not in endpoints  # the staying members
    assert phase(plan_reset(ctx(stacked, [h.name for h in stacked.hosts])), "RemoveEtcdMembers").is_noop
    assert phase(plan_reset(ctx(stacked, ["worker-1"])), "RemoveEtcdMembers").is_noop


def test_external_etcd_members_are_not_touched_by_a_control_plane_reset(cluster):
    assert phase(plan_reset(ctx(cluster, ["cp-3"])), "RemoveEtcdMembers").is_noop
