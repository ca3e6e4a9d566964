"""A resumed upgrade puts back into service the nodes the interrupted run drained and never
uncordoned (found by the fault matrix: Ctrl-C between a node's kubelet restart and its uncordon left
it at the new version, so `--resume` planned nothing for it and it stayed cordoned for good)."""

from __future__ import annotations

from dataclasses import replace

from kubeforge.plan.upgrade import check_upgrade_safety, plan_hop, plan_path
from tests.unit.test_upgrade_planner import V133, V134, cluster, facts_at, noop_backup, steps_of, up_files


def cordoned(facts, *names):
    for n in names:
        facts.nodes[n] = replace(facts.nodes[n], unschedulable=True)
    return facts


def ids(plan, phase):
    return [s.id for s in steps_of(plan, phase)]


# what the interrupted run journaled for worker-1: drained, upgraded, restarted -- not uncordoned
WORKER_1_UNTIL_RESTART = frozenset({
    "BackupEtcd/local/v1.34.2-etcd-backup",
    "UpgradeWorkers/worker-1/v1.34.2-kubeadm",
    "UpgradeWorkers/cp-1/v1.34.2-drain-worker-1",
    "UpgradeWorkers/worker-1/v1.34.2-kubeadm-upgrade-node",
    "UpgradeWorkers/worker-1/v1.34.2-kubelet-kubectl",
    "UpgradeWorkers/worker-1/v1.34.2-restart-kubelet",
})


def test_a_node_the_resumed_run_drained_and_left_cordoned_at_the_version_gets_its_ready_gate_and_uncordon():
    c = cluster()
    facts = cordoned(facts_at(c, V134, worker_2=V133), "worker-1")
    plan = plan_hop(c, facts, V134, backup=noop_backup, node_files=up_files(c), journaled=WORKER_1_UNTIL_RESTART)
    fresh = plan_hop(c, facts_at(c, V133), V134, backup=noop_backup, node_files=up_files(c))
    back = [i for i in ids(plan, "UpgradeWorkers") if i.endswith("worker-1")]
    # the ids of the uninterrupted run's last two steps for worker-1: the journal skips what had passed
    assert back == ["UpgradeWorkers/cp-1/v1.34.2-ready-worker-1", "UpgradeWorkers/cp-1/v1.34.2-uncordon-worker-1"]
    assert set(back) <= set(ids(fresh, "UpgradeWorkers"))
    assert "UpgradeWorkers/cp-1/v1.34.2-drain-worker-2" in ids(plan, "UpgradeWorkers")  # worker-2 still upgraded


def test_without_the_resumed_run_s_drain_a_cordoned_node_at_the_version_is_left_as_the_operator_has_it():
    c = cluster()
    facts = cordoned(facts_at(c, V134, worker_2=V133), "worker-1")
    fresh_run = plan_hop(c, facts, V134, backup=noop_backup, node_files=up_files(c))
    assert not any(i.endswith("worker-1") for i in ids(fresh_run, "UpgradeWorkers"))
    uncordoned_then = WORKER_1_UNTIL_RESTART | {"UpgradeWorkers/cp-1/v1.34.2-ready-worker-1",
                                               "UpgradeWorkers/cp-1/v1.34.2-uncordon-worker-1"}
    again = plan_hop(c, facts, V134, backup=noop_backup, node_files=up_files(c), journaled=uncordoned_then)
    assert not any(i.endswith("worker-1") for i in ids(again, "UpgradeWorkers"))
    # drained in this hop but no longer cordoned (uncordoned by hand): nothing either
    ready = plan_hop(c, facts_at(c, V134, worker_2=V133), V134, backup=noop_backup, node_files=up_files(c),
                     journaled=WORKER_1_UNTIL_RESTART)
    assert not any(i.endswith("worker-1") for i in ids(ready, "UpgradeWorkers"))


def test_every_node_at_the_version_but_one_left_cordoned_resumes_into_its_uncordon_and_the_hop_s_record():
    c = cluster()
    journaled = frozenset({"UpgradeControlPlanes/cp-1/v1.34.2-drain-cp-2",
                           "UpgradeControlPlanes/cp-2/v1.34.2-restart-kubelet"})
    facts = cordoned(facts_at(c, V134), "cp-2")
    path = check_upgrade_safety(c, facts, V134, multi_hop=False)
    assert path == []  # every node runs the version: only the journal tells what is left
    plan = plan_path(c, facts, path, V134, backup=noop_backup, node_files=up_files(c), journaled=journaled)
    assert ids(plan, "UpgradeControlPlanes") == ["UpgradeControlPlanes/cp-1/v1.34.2-ready-cp-2",
                                                 "UpgradeControlPlanes/cp-1/v1.34.2-uncordon-cp-2"]
    assert {h.name for h in c.hosts} == {i.split("/")[1] for i in ids(plan, "RecordApplied")}
    assert not steps_of(plan, "UpgradeWorkers") and not steps_of(plan, "UpgradeFirstControlPlane")
    # the same cluster without a run to resume: nothing to do, as before
    assert plan_path(c, facts, path, V134, backup=noop_backup, node_files=up_files(c)).is_noop


def test_the_first_control_plane_left_cordoned_by_the_resumed_run_is_uncordoned_too():
    c = cluster()
    journaled = frozenset({"UpgradeFirstControlPlane/cp-1/v1.34.2-drain-cp-1",
                           "UpgradeFirstControlPlane/cp-1/v1.34.2-ready-cp-1"})
    facts = cordoned(facts_at(c, V134, cp_2=V133, worker_1=V133, worker_2=V133), "cp-1")
    plan = plan_hop(c, facts, V134, backup=noop_backup, node_files=up_files(c), journaled=journaled)
    assert ids(plan, "UpgradeFirstControlPlane") == ["UpgradeFirstControlPlane/cp-1/v1.34.2-ready-cp-1",
                                                     "UpgradeFirstControlPlane/cp-1/v1.34.2-uncordon-cp-1"]
