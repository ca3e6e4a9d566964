"""`node remove`: which removals are refused (first control plane, etcd quorum, the last balancer)
and what the plan does, in order: drain, balancers, etcd member, reset."""

from __future__ import annotations

import json

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.model import EndpointMode, EtcdTopology
from kubeforge.plan.etcd.membership import ListedMember
from kubeforge.plan.node.remove import RemovalInput, check_removal, next_step, plan_node_remove
from kubeforge.render.endpoint import HAPROXY_PATH
from tests.factories import make_cluster

STAMP = "20261206T170000Z"


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("node-ext"), n_etcd=3, n_cp=3, n_workers=2, n_lb=2,
                        endpoint_mode=EndpointMode.HAPROXY)


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("node-stacked"), topology=EtcdTopology.STACKED, n_cp=3, n_workers=1,
                        n_lb=1, endpoint_mode=EndpointMode.HAPROXY)


def listed(cluster, leader: str = "") -> tuple[ListedMember, ...]:
    return tuple(ListedMember(f"{i + 10:x}", h.name, (f"https://{h.internal_address}:2380",),
                              (f"https://{h.internal_address}:2379",), healthy=True, leader=h.name == leader)
                 for i, h in enumerate(cluster.etcd_members))


def plan(cluster, names, *, members=(), registered=None):
    hosts = cluster.select(names)
    registered = frozenset(h.name for h in cluster.nodes) if registered is None else registered
    return plan_node_remove(RemovalInput(cluster, hosts, STAMP, True, members), registered)


def phase(p, name):
    return next(x for x in p.phases if x.name == name)


def test_removing_the_first_control_plane_is_refused(external):
    with pytest.raises(SafetyRefusal, match="cp-1 is the first control plane") as e:
        check_removal(external, external.select(["cp-1"]))
    assert e.value.exit_code == 7


def test_removing_one_of_three_etcd_members_is_allowed_and_two_are_refused(external):
    check_removal(external, external.select(["etcd-3"]))
    with pytest.raises(SafetyRefusal, match=r"leaves 1 of 3 etcd members.*quorum \(2\)"):
        check_removal(external, external.select(["etcd-2", "etcd-3"]))


def test_two_to_one_etcd_members_needs_the_explicit_flag(tmp_path):
    two = make_cluster(tmp_path, n_etcd=2, n_cp=2, n_workers=0)
    with pytest.raises(SafetyRefusal, match="leaves 1 of 2 etcd members") as e:
        check_removal(two, two.select(["etcd-2"]))
    assert "--allow-below-quorum" in e.value.hint
    check_removal(two, two.select(["etcd-2"]), allow_below_quorum=True)


def test_the_last_etcd_member_is_never_removed_even_with_the_flag(tmp_path):
    one = make_cluster(tmp_path, n_etcd=1, n_cp=2, n_workers=0)
    with pytest.raises(SafetyRefusal, match="leaves no etcd member"):
        check_removal(one, one.select(["etcd-1"]), allow_below_quorum=True)


def test_stacked_control_planes_count_as_etcd_members(stacked):
    check_removal(stacked, stacked.select(["cp-3"]))
    with pytest.raises(SafetyRefusal, match="quorum"):
        check_removal(stacked, stacked.select(["cp-2", "cp-3"]))


def test_removing_every_load_balancer_is_refused(external):
    with pytest.raises(SafetyRefusal, match="leaves no load balancer"):
        check_removal(external, external.select(["lb-1", "lb-2"]))


def test_a_worker_is_drained_before_its_reset_and_its_node_deleted_after(external):
    p = plan(external, ["worker-2"])
    names = [x.name for x in p.phases if not x.is_noop]
    assert names == ["DrainNodes", "UpdateEndpoint", "ResetNodes", "RemoveNodeObjects", "RemoveKubeforgeFiles"]
    drain = phase(p, "DrainNodes").steps[0]
    assert drain.host == "cp-1" and "drain worker-2" in drain.command.script
    assert f"--timeout={external.upgrade.drain_timeout_s}s" in drain.command.script
    drain_line = next(line for line in drain.command.script.splitlines() if " drain worker-2" in line)
    # PDBs hold, bare pods stay (the drain refuses them unless --force-bare-pods)
    assert "--disable-eviction" not in drain_line and "--force" not in drain_line
    assert "get node worker-2" in drain.unless.script  # a resumed run skips a node already gone
    assert "delete node worker-2" in phase(p, "RemoveNodeObjects").steps[0].command.script
    assert {s.host for s in phase(p, "ResetNodes").steps} == {"worker-2"}


def test_the_drain_timeout_given_on_the_command_line_wins(external):
    p = plan_node_remove(RemovalInput(external, external.select(["worker-1"]), STAMP, True, (), 45),
                         frozenset({"worker-1"}))
    assert "--timeout=45s" in phase(p, "DrainNodes").steps[0].command.script


def test_a_node_the_api_no_longer_lists_is_not_drained(external):
    p = plan(external, ["worker-1"], registered=frozenset({"cp-1", "cp-2", "cp-3", "worker-2"}))
    assert phase(p, "DrainNodes").is_noop


def test_the_balancers_are_rendered_without_the_removed_control_plane(external):
    p = plan(external, ["cp-3"])
    lanes = phase(p, "UpdateEndpoint").lanes
    assert [lane.host for lane in lanes] == ["lb-1", "lb-2"]
    cfg = next(s for s in lanes[0].steps if getattr(s, "file", None) is not None and s.file.path == HAPROXY_PATH)
    text = cfg.file.content.decode()
    cp3 = external.host("cp-3").internal_address
    assert external.host("cp-2").internal_address in text and cp3 not in text
    assert any("reload-or-restart" in getattr(s, "command", None).script for s in lanes[0].steps
               if getattr(s, "command", None) is not None)


def test_a_removed_worker_changes_no_balancer_file(external):
    """The balancers render to the same bytes: the put steps are skipped by sha256 on the hosts."""
    a = phase(plan(external, ["worker-1"]), "UpdateEndpoint").lanes[0].steps[0].file.content
    b = phase(plan(external, ["worker-2"]), "UpdateEndpoint").lanes[0].steps[0].file.content
    assert a == b


def test_an_external_etcd_member_is_removed_by_one_that_stays_before_the_host_is_reset(external):
    members = listed(external, leader="etcd-3")
    p = plan(external, ["etcd-3"], members=members)
    names = [x.name for x in p.phases]
    assert names.index("RemoveEtcdMember-etcd-3") < names.index("StopEtcd") < names.index("RemoveKubeforgeFiles")
    remove = phase(p, "RemoveEtcdMember-etcd-3")
    assert {lane.host for lane in remove.lanes} == {"etcd-1"}  # no local "retire": reset's StopEtcd does that
    script = remove.steps[0].command.script
    assert "move-leader" in script and "member remove" in script and "12" in script  # etcd-3's id
    assert phase(p, "DrainNodes").is_noop  # an etcd host is no node


def test_a_stacked_control_plane_leaves_etcd_before_kubeadm_reset(stacked):
    p = plan(stacked, ["cp-3"], members=listed(stacked))
    names = [x.name for x in p.phases]
    order = ["DrainNodes", "UpdateEndpoint", "RemoveEtcdMember-cp-3", "ResetNodes", "RemoveNodeObjects"]
    assert [n for n in names if n in order] == order
    remove = phase(p, "RemoveEtcdMember-cp-3")
    assert remove.steps[0].host == "cp-1" and "/etc/kubernetes/pki/etcd/" in remove.steps[0].command.script


def test_a_member_etcd_no_longer_lists_plans_no_removal(stacked):
    members = tuple(m for m in listed(stacked) if m.name != "cp-3")  # a resumed run after the removal
    p = plan(stacked, ["cp-3"], members=members)
    assert phase(p, "RemoveEtcdMembers").reason == "etcd no longer lists cp-3"


def test_the_plan_round_trips_as_json_with_unique_step_ids(external):
    p = plan(external, ["cp-3", "worker-1"])
    doc = json.loads(json.dumps(p.to_dict()))
    assert doc["workflow"] == "node remove"
    ids = [s.id for s in p.steps]
    assert len(ids) == len(set(ids))


def test_the_next_step_says_to_delete_the_host_from_the_inventory(external):
    note = next_step(external, ["worker-2"], "inv.yaml")
    assert "delete it from inv.yaml" in note and "stacked" not in note


def test_two_stacked_control_planes_left_ask_for_a_third_in_the_same_edit(stacked):
    note = next_step(stacked, ["cp-3"], "inv.yaml")
    assert "2 control planes with stacked etcd" in note and "add a third control plane" in note


def test_a_leaving_balancer_is_dropped_from_the_other_ones_keepalived_peers_and_stopped(external):
    from kubeforge.render.endpoint import KEEPALIVED_PATH

    p = plan(external, ["lb-2"])
    lanes = phase(p, "UpdateEndpoint").lanes
    assert [lane.host for lane in lanes] == ["lb-1"]
    conf = next(s.file.content.decode() for s in lanes[0].steps
                if getattr(s, "file", None) is not None and s.file.path == KEEPALIVED_PATH)
    assert external.host("lb-2").internal_address not in conf
    assert [s.host for s in phase(p, "StopEndpoint").steps] == ["lb-2"]
    assert phase(p, "DrainNodes").is_noop and phase(p, "ResetNodes").is_noop


def test_with_force_bare_pods_the_drain_deletes_pods_no_controller_manages(external):
    from kubeforge.cli.options import allow_bare_pods

    p = plan(allow_bare_pods(external, True), ["worker-2"])
    drain = phase(p, "DrainNodes").steps[0]
    drain_line = next(line for line in drain.command.script.splitlines() if " drain worker-2" in line)
    assert "--force" in drain_line and "--disable-eviction" not in drain_line  # PDBs still hold
