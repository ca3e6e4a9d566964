"""Upgrade planner decisions from facts: order, who applies, batches, no-ops, resumed clusters, and
a JSON snapshot of a whole plan (regenerate with --update-golden and review the diff)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kubeforge.facts.cluster import Node
from kubeforge.facts.upgrade import NodeMachine
from kubeforge.model import UpgradePolicy
from kubeforge.model.versions import parse_kube
from kubeforge.plan.steps import GateStep, LocalStep, PutFileStep, RunStep
from kubeforge.plan.upgrade import (
    UpgradeFacts,
    check_upgrade_safety,
    plan_hop,
    plan_path,
)
from kubeforge.plan.upgrade.planner import PHASES
from tests.factories import make_cluster

V133 = parse_kube("1.33.5")
V134 = parse_kube("1.34.2")
V135 = parse_kube("1.35.1")
ALL = frozenset(("kubeadm", "kubelet", "kubectl"))
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "upgrade-plan" / "ha-1.33.5-to-1.34.2.json"


def cluster(n_cp=2, n_workers=2, **policy):
    c = make_cluster(Path("/tmp/kubeforge-upgrade-test"), version="1.33.5", n_cp=n_cp, n_workers=n_workers)
    return replace(c, upgrade=replace(UpgradePolicy(), **policy)) if policy else c


def facts_at(c, version=V133, **overrides) -> UpgradeFacts:
    """Every node at ``version`` with packages held, Ready; ``overrides``: node -> version."""
    machines, nodes = {}, {}
    for h in c.nodes:
        v = overrides.get(h.name.replace("-", "_"), version)
        machines[h.name] = NodeMachine(h.name, {k: v for k in ALL}, ALL, v if h.is_control_plane else None)
        nodes[h.name] = Node(h.name, True, unschedulable=False, kubelet=v)
    return UpgradeFacts(machines, nodes)


def noop_backup():
    return None


def up_files(c):
    """What `up` renders for every host of ``c`` moved to a version (the workflow's files_at)."""
    from tests.unit.test_up_planner import resolve

    return lambda version: resolve(replace(c, kubernetes_version=version))[1]


def steps_of(plan, phase):
    return [s for p in plan.phases if p.name == phase for s in p.steps]


def test_a_hop_runs_backup_sources_first_control_plane_other_control_planes_workers_verify_then_record():
    c = cluster()
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup, node_files=up_files(c))
    assert [p.name for p in plan.phases] == [
        "BackupEtcd", "PrepareImages", "SwitchPackageSource", "UpgradeFirstControlPlane", "UpgradeControlPlanes",
        "UpgradeWorkers", "VerifyVersions", "RecordApplied",
    ]
    images = plan.phases[1]  # no offline bundle: the images come from the registry
    assert images.is_noop and images.reason == "images come from the registry"
    assert all(not p.is_noop for p in plan.phases if p is not images)
    assert isinstance(plan.phases[0].steps[0], LocalStep)
    assert plan.workflow == "upgrade 1.34.2"


def test_only_the_first_control_plane_runs_upgrade_apply_and_the_others_run_upgrade_node():
    c = cluster(n_cp=3)
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    applies = [s for s in plan.steps if isinstance(s, RunStep) and "kubeadm upgrade apply" in s.command.script]
    nodes = [s for s in plan.steps if isinstance(s, RunStep) and "kubeadm upgrade node" in s.command.script]
    assert [s.host for s in applies] == ["cp-1"]
    assert "kubeadm upgrade apply v1.34.2 --yes --config /etc/kubeforge/kubeadm-upgrade.yaml" in applies[0].command.script
    assert [s.host for s in nodes] == ["cp-2", "cp-3", "worker-1", "worker-2"]
    cp_phase = next(p for p in plan.phases if p.name == "UpgradeControlPlanes")
    assert cp_phase.strategy.batch_size(len(cp_phase.lanes)) == 1 and not cp_phase.strategy.finish_batch


@pytest.mark.parametrize(("max_unavailable", "batches"), [("1", [1] * 6), ("50%", [3, 3]), ("2", [2, 2, 2]), ("10%", [1] * 6)])
def test_six_workers_go_in_batches_of_the_policys_max_unavailable(max_unavailable, batches):
    c = cluster(n_workers=6, max_unavailable=max_unavailable)
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    phase = next(p for p in plan.phases if p.name == "UpgradeWorkers")
    assert [len(b) for b in phase.strategy.batches(phase.lanes)] == batches
    assert phase.strategy.finish_batch  # a failing batch finishes; then the run stops


def test_the_batch_size_of_a_resumed_run_counts_every_worker_not_only_those_left():
    c = cluster(n_workers=6, max_unavailable="50%")
    facts = facts_at(c, worker_1=V134, worker_2=V134)
    phase = next(p for p in plan_hop(c, facts, V134, backup=noop_backup).phases if p.name == "UpgradeWorkers")
    assert [lane.host for lane in phase.lanes] == ["worker-3", "worker-4", "worker-5", "worker-6"]
    assert [len(b) for b in phase.strategy.batches(phase.lanes)] == [3, 1]


def test_a_worker_is_drained_before_its_kubelet_restarts_and_uncordoned_only_after_ready_on_the_new_version():
    c = cluster()
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    lane = next(ln for p in plan.phases if p.name == "UpgradeWorkers" for ln in p.lanes if ln.host == "worker-1")
    titles = [s.title for s in lane.steps]
    order = [
        next(i for i, t in enumerate(titles) if t.startswith(prefix))
        for prefix in ("Install kubeadm", "Drain worker-1", "Upgrade the node configuration", "Install kubelet and kubectl",
                       "Restart the kubelet", "Wait for worker-1 Ready", "Uncordon worker-1")
    ]
    assert order == sorted(order)
    gate = next(s for s in lane.steps if isinstance(s, GateStep))
    assert '"kubeletVersion":"v1.34.2"' in gate.probe.script
    # kubectl needs admin.conf: drain, gate and uncordon run on the first control plane
    assert {s.host for s in lane.steps if "worker-1" in s.title} == {"cp-1"}
    assert {s.host for s in lane.steps if s.title.startswith(("Install", "Restart", "Upgrade"))} == {"worker-1"}


def test_a_failed_drain_uncordons_the_node_unless_the_policy_leaves_it_cordoned():
    def drain(c):
        return next(s for s in plan_hop(c, facts_at(c), V134, backup=noop_backup).steps if s.title.startswith("Drain worker-1"))
    default = drain(cluster(drain_timeout_s=42))
    assert "--timeout=42s" in default.command.script and "--ignore-daemonsets" in default.command.script
    assert "uncordon worker-1" in default.command.script
    kept = drain(cluster(leave_cordoned_on_failure=True))
    assert "uncordon" not in kept.command.script and "left cordoned" in kept.command.script


def test_every_script_of_a_plan_is_valid_bash():
    c = cluster(n_cp=3, n_workers=3)
    plan = plan_path(c, facts_at(c), [V134, V135], V135, backup=noop_backup)
    scripts = []
    for s in plan.steps:
        if isinstance(s, RunStep):
            scripts += [s.command.script, s.unless.script if s.unless else None]
        elif isinstance(s, GateStep):
            scripts.append(s.probe.script)
    for script in sorted(set(filter(None, scripts))):
        res = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, check=False)
        assert res.returncode == 0, (script, res.stderr)


def test_a_node_already_at_the_target_is_left_out_with_the_reason_and_a_converged_cluster_plans_nothing():
    c = cluster()
    half = plan_hop(c, facts_at(c, worker_1=V134), V134, backup=noop_backup)
    assert "worker-1" not in half.hosts and "worker-2" in half.hosts
    done = plan_hop(c, facts_at(c, V134), V134, backup=noop_backup)
    assert done.is_noop
    assert {p.reason for p in done.phases} >= {"every node already runs 1.34.2", "every worker already runs 1.34.2"}


def test_a_cluster_stopped_after_the_first_control_plane_plans_only_what_is_left():
    c = cluster()
    facts = facts_at(c, cp_1=V134)  # apply done and cp-1's kubelet upgraded; cp-2 still on 1.33
    assert check_upgrade_safety(c, facts, V134, multi_hop=False) == [V134]
    plan = plan_hop(c, facts, V134, backup=noop_backup)
    first = next(p for p in plan.phases if p.name == "UpgradeFirstControlPlane")
    assert first.is_noop and first.reason == "cp-1 already runs 1.34.2"
    assert not any("upgrade apply" in getattr(getattr(s, "command", None), "script", "") for s in plan.steps)
    assert [ln.host for ln in next(p for p in plan.phases if p.name == "UpgradeControlPlanes").lanes] == ["cp-2"]


def test_a_control_plane_whose_kubeadm_ran_but_kubelet_did_not_only_gets_the_kubelet_steps():
    c = cluster()
    facts = facts_at(c)
    m = facts.machines["cp-1"]
    facts = replace(facts, machines={**facts.machines, "cp-1": replace(m, packages={**m.packages, "kubeadm": V134}, apiserver=V134)})
    lane = next(p for p in plan_hop(c, facts, V134, backup=noop_backup).phases if p.name == "UpgradeFirstControlPlane").lanes[0]
    assert [s.title.split(" ")[0] for s in lane.steps] == ["Drain", "Install", "Restart", "Wait", "Uncordon"]


def test_a_multi_hop_plan_shows_each_hop_with_its_own_step_ids():
    c = cluster()
    plan = plan_path(c, facts_at(c), [V134, V135], V135, backup=noop_backup)
    assert plan.workflow == "upgrade 1.35.1"
    assert len(plan.phases) == 2 * len(PHASES)
    applies = [s for s in plan.steps if isinstance(s, RunStep) and "upgrade apply" in s.command.script]
    assert [s.id for s in applies] == [
        "UpgradeFirstControlPlane/cp-1/v1.34.2-kubeadm-upgrade-apply",
        "UpgradeFirstControlPlane/cp-1/v1.35.1-kubeadm-upgrade-apply",
    ]
    assert "(hop 2 of 2)" in plan.phases[-1].title


def test_files_of_a_hop_switch_the_source_and_pin_to_the_new_minor():
    c = cluster()
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    puts = {s.file.path: s.file.content.decode() for s in steps_of(plan, "SwitchPackageSource") if isinstance(s, PutFileStep) and s.host == "cp-1"}
    assert "/kubernetes/v1.34/deb/ /" in puts["/etc/apt/sources.list.d/kubernetes.list"]
    assert "Pin: version 1.34.2-*" in puts["/etc/apt/preferences.d/kubeforge-kubernetes"]


def test_stacked_etcd_plans_no_backup_step_and_says_why():
    from kubeforge.model import EtcdTopology

    c = replace(make_cluster(Path("/tmp/kubeforge-upgrade-test"), version="1.33.5", topology=EtcdTopology.STACKED, n_etcd=0), )
    plan = plan_hop(c, facts_at(c), V134, backup=None, backup_unavailable="stacked etcd: kubeadm backs it up")
    assert plan.phases[0].is_noop and plan.phases[0].reason == "stacked etcd: kubeadm backs it up"


def test_the_plan_of_an_ha_upgrade_matches_its_json_snapshot(update_golden):
    c = cluster(n_cp=2, n_workers=2)
    plan = plan_path(c, facts_at(c), [V134], V134, backup=noop_backup)
    text = json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n"
    if update_golden:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_a_multi_hop_plan_from_1_35_to_1_37_crosses_1_36_at_the_patch_the_source_offers_and_names_it():
    c = replace(make_cluster(Path("/tmp/kubeforge-upgrade-test"), version="1.35.1", n_cp=2, n_workers=1,
                             etcd_version="3.6.11"))
    offered = frozenset(parse_kube(v) for v in ("1.36.4", "1.36.5", "1.37.1"))
    facts = replace(facts_at(c, version=V135), offered=offered, offered_from="the mirror http://m (kubernetes/{v1.36, v1.37}/deb Packages)")
    path = check_upgrade_safety(c, facts, parse_kube("1.37.1"), multi_hop=True)
    assert [str(v) for v in path] == ["1.36.5", "1.37.1"]
    plan = plan_path(c, facts, path, parse_kube("1.37.1"), backup=noop_backup)
    titles = [p.title for p in plan.phases]
    assert "Switch the package source to Kubernetes 1.36 (hop 1 of 2); 1.36.5 offered by the mirror http://m " \
           "(kubernetes/{v1.36, v1.37}/deb Packages)" in titles
    assert any(t.startswith("Switch the package source to Kubernetes 1.37 (hop 2 of 2); 1.37.1 offered by") for t in titles)
    configs = [s.file.content.decode() for s in plan.steps if isinstance(s, PutFileStep)
               and s.file.path.endswith("kubeadm-upgrade.yaml")]
    assert configs and all("kubeadm.k8s.io/v1beta4" in t and "v1beta3" not in t for t in configs)


def test_with_stacked_etcd_every_control_plane_waits_for_all_members_healthy_before_the_next_moves():
    from kubeforge.model import EtcdTopology

    c = make_cluster(Path("/tmp/kubeforge-upgrade-test"), version="1.33.5", n_cp=3, n_workers=1,
                     topology=EtcdTopology.STACKED)
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    for phase, kubeadm_step in (("UpgradeFirstControlPlane", "kubeadm upgrade apply"),
                                ("UpgradeControlPlanes", "kubeadm upgrade node")):
        steps = steps_of(plan, phase)
        for i, s in enumerate(steps):
            if isinstance(s, RunStep) and kubeadm_step in (s.command.script or ""):
                gate = steps[i + 1]  # kubeadm restarted this member: the gate comes before anything else
                assert isinstance(gate, GateStep) and gate.host == s.host
                assert "endpoint health" in gate.probe.script and all(
                    f"https://{h.internal_address}:2379" in gate.probe.script for h in c.control_planes)
    gates = [s for p in plan.phases for s in p.steps if isinstance(s, GateStep) and "etcd healthy" in s.title]
    assert [g.host for g in gates] == [h.name for h in c.control_planes]


def test_with_external_etcd_kubeadm_moves_no_member_and_no_etcd_gate_is_planned():
    c = cluster(n_cp=3)
    plan = plan_hop(c, facts_at(c), V134, backup=noop_backup)
    assert not [s for p in plan.phases for s in p.steps if isinstance(s, GateStep) and "etcd healthy" in s.title]
