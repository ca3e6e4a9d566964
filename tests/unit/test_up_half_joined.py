"""A control-plane join that stopped half-way (kubeadm join --control-plane killed before its last
phase, mark-control-plane): the host holds kubelet.conf, its Node is not marked a control plane, its
manifests (and with stacked etcd a member and its data) make kubeadm's preflight refuse a rerun.
`up` takes it back — the half-added etcd member removed first, never below quorum — and joins again."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcdctl import peer_url
from kubeforge.model import EtcdTopology
from kubeforge.plan.etcd.membership import ListedMember, remove_by_peer_url
from kubeforge.plan.steps import RunStep
from kubeforge.plan.up import plan_up
from kubeforge.plan.up.context import CONTROL_PLANE_LABEL
from tests.factories import make_cluster
from tests.unit.test_up_planner import VERSION, converged_ctx, phase, resolve


def _stacked(tmp_path_factory, n_cp: int):
    c = make_cluster(tmp_path_factory.mktemp(f"stacked{n_cp}"), version=VERSION, topology=EtcdTopology.STACKED,
                     n_cp=n_cp, n_workers=1)
    return c, resolve(c)[1]


@pytest.fixture(scope="module")
def stacked3(tmp_path_factory):
    return _stacked(tmp_path_factory, 3)


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    c = make_cluster(tmp_path_factory.mktemp("external"), version=VERSION, n_cp=2, n_workers=1)
    return c, resolve(c)[1]


def unmarked(ctx, name: str, *, registered: bool = True):
    """The cluster as the stopped join left it: ``name``'s Node without the control-plane label (or none)."""
    nodes = dict(ctx.state.nodes)
    if registered:
        labels = {k: v for k, v in nodes[name].labels.items() if k != CONTROL_PLANE_LABEL}
        nodes[name] = dataclasses.replace(nodes[name], labels=labels, ready=False)
    else:
        del nodes[name]
    return dataclasses.replace(ctx, state=dataclasses.replace(ctx.state, nodes=nodes))


def member(cluster, name: str, *, started: bool = True, healthy: bool = True, learner: bool = False) -> ListedMember:
    h = next(h for h in cluster.hosts if h.name == name)
    return ListedMember(id=f"{abs(hash(name)) % 10**8:x}", name=name if started else "", peer_urls=(peer_url(cluster, h),),
                        learner=learner, healthy=healthy and started)


def run_keys(plan, phase_name: str) -> list[tuple[str, str]]:
    return [(s.host, s.key) for s in phase(plan, phase_name).steps if isinstance(s, RunStep)]


def test_a_half_joined_control_plane_is_reset_its_node_deleted_and_joined_again(external):
    cluster, files = external
    ctx = unmarked(converged_ctx(cluster, files), "cp-2")
    assert ctx.half_joined(cluster.control_planes[1]) and ctx.needs_join(cluster.control_planes[1])
    plan = plan_up(ctx)
    assert run_keys(plan, "JoinControlPlanes") == [
        ("cp-2", "kubeadm-reset-incomplete-join"), ("cp-1", "delete-cp-2"), ("cp-2", "kubeadm-join")]
    reset, delete, _ = [s for s in phase(plan, "JoinControlPlanes").steps if isinstance(s, RunStep)]
    assert "kubeadm reset -f" in reset.command.script and reset.repeat_on_resume
    assert "pki.kubeforge-keep" in reset.command.script  # the CA kubeforge placed stays for the join
    assert "delete node cp-2 --ignore-not-found" in delete.command.script
    # the Node comes back from the join without what kubectl set on the old one: set it again
    assert "taint node cp-2 " in phase(plan, "LabelAndTaintNodes").steps[0].command.script
    # the join needs certificates uploaded (they live 2 h) and a live token, as for any join
    assert [s.key for s in phase(plan, "InitFirstControlPlane").steps if isinstance(s, RunStep)] == ["upload-certs"]
    # a Node the API never registered is as unfinished
    assert run_keys(plan_up(unmarked(converged_ctx(cluster, files), "cp-2", registered=False)), "JoinControlPlanes")[0] \
        == ("cp-2", "kubeadm-reset-incomplete-join")


def test_only_a_control_plane_with_kubelet_conf_and_an_unmarked_node_on_a_readable_cluster_is_half_joined(external):
    cluster, files = external
    ctx = converged_ctx(cluster, files)
    assert phase(plan_up(ctx), "JoinControlPlanes").is_noop  # marked: joined
    cp2, worker = cluster.control_planes[1], cluster.workers[0]
    # a worker's Node never carries the label
    assert not ctx.half_joined(worker)
    # the first control plane is init's (InitFirstControlPlane handles a half-done init)
    assert not unmarked(ctx, "cp-1").half_joined(cluster.control_planes[0])
    # without kubelet.conf the host simply joins
    bare = dataclasses.replace(ctx.facts["cp-2"], membership=dataclasses.replace(ctx.facts["cp-2"].membership, kubelet_conf=False))
    ctx2 = dataclasses.replace(unmarked(ctx, "cp-2"), facts={**ctx.facts, "cp-2": bare})
    assert not ctx2.half_joined(cp2) and ctx2.needs_join(cp2)
    # an API that did not answer proves nothing
    silent = dataclasses.replace(unmarked(ctx, "cp-2"), state=dataclasses.replace(ctx.state, initialized=False))
    assert not silent.half_joined(cp2)


def test_with_stacked_etcd_the_member_the_stopped_join_added_is_removed_first_by_peer_url(stacked3):
    cluster, files = stacked3
    ctx = unmarked(converged_ctx(cluster, files), "cp-3")
    # added, never started: no name yet; 3 voters, 2 healthy, quorum 2, and 2 of 2 stay healthy
    members = (member(cluster, "cp-1"), member(cluster, "cp-2"), member(cluster, "cp-3", started=False))
    plan = plan_up(dataclasses.replace(ctx, etcd_members=members))
    steps = [s for s in phase(plan, "JoinControlPlanes").steps if isinstance(s, RunStep)]
    assert [(s.host, s.key) for s in steps] == [
        ("cp-1", "etcd-member-cp-3"), ("cp-3", "kubeadm-reset-incomplete-join"), ("cp-1", "delete-cp-3"),
        ("cp-3", "kubeadm-join")]
    script = steps[0].command.script
    assert f"-v u={peer_url(cluster, cluster.control_planes[2])} '$4 == u'" in script and 'member remove "$id"' in script
    endpoints = next(w for w in script.split() if w.startswith("--endpoints="))
    assert ":2379" in endpoints and cluster.control_planes[2].internal_address not in endpoints
    # a learner never votes: removed whatever the others' health
    lagging = (member(cluster, "cp-1"), member(cluster, "cp-2", healthy=False), member(cluster, "cp-3", learner=True))
    assert run_keys(plan_up(dataclasses.replace(ctx, etcd_members=lagging)), "JoinControlPlanes")[0] == ("cp-1", "etcd-member-cp-3")
    # nothing listed: nothing to remove
    two = (member(cluster, "cp-1"), member(cluster, "cp-2"))
    assert run_keys(plan_up(dataclasses.replace(ctx, etcd_members=two)), "JoinControlPlanes")[0] == \
        ("cp-3", "kubeadm-reset-incomplete-join")


def test_a_removal_etcd_could_not_commit_or_that_leaves_fewer_than_a_quorum_healthy_is_refused(stacked3, tmp_path_factory):
    cluster, files = stacked3
    ctx = unmarked(converged_ctx(cluster, files), "cp-3")
    # started and healthy, but cp-2 is down: 1 of 2 voters would stay healthy
    down = (member(cluster, "cp-1"), member(cluster, "cp-2", healthy=False), member(cluster, "cp-3"))
    with pytest.raises(SafetyRefusal, match=r"would leave 1 healthy of 2 voting members, below quorum \(2\)"):
        plan_up(dataclasses.replace(ctx, etcd_members=down))
    # the unstarted member counts as a voter: 2 members, 1 healthy, no quorum, the removal cannot commit
    two, two_files = _stacked(tmp_path_factory, 2)
    ctx2 = unmarked(converged_ctx(two, two_files), "cp-2")
    with pytest.raises(SafetyRefusal, match=r"no quorum now \(1 of 2 voting members healthy") as e:
        plan_up(dataclasses.replace(ctx2, etcd_members=(member(two, "cp-1"), member(two, "cp-2", started=False))))
    assert "let cp-2's kubelet run its etcd static pod" in (e.value.hint or "")
    # the list was not read: no blind removal
    with pytest.raises(SafetyRefusal, match="member list was not read"):
        plan_up(ctx)


FAKE_ETCDCTL = """#!/bin/sh
# etcdctl member list / member remove against a list file (3.4+ simple format)
for a in "$@"; do last2="$last1"; last1="$a"; done
case "$*" in
  *"member list"*) [ -f "$LIST" ] || exit 1; cat "$LIST" ;;
  *"member remove"*) grep -v "^$last1, " "$LIST" > "$LIST.new"; mv "$LIST.new" "$LIST"; echo "Member $last1 removed" ;;
esac
"""


@pytest.fixture
def etcdctl(tmp_path: Path):
    (tmp_path / "etcdctl").write_text(FAKE_ETCDCTL)
    (tmp_path / "etcdctl").chmod(0o755)
    return dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", LIST=str(tmp_path / "list"))


def test_the_removal_script_finds_an_unstarted_member_by_peer_url_and_never_takes_a_failed_list_for_absent(
        stacked3, etcdctl, tmp_path):
    cluster, _ = stacked3
    url = peer_url(cluster, cluster.control_planes[2])
    script = remove_by_peer_url(cluster, ["https://10.0.0.1:2379"], url)
    listing = (f"8e9e05c52164694d, started, cp-1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n"
               f"fd422379fda50e48, unstarted, , {url}, , false\n")
    Path(etcdctl["LIST"]).write_text(listing)
    res = subprocess.run(["bash", "-c", script], env=etcdctl, capture_output=True, text=True)
    assert res.returncode == 0 and "Member fd422379fda50e48 removed" in res.stdout, res.stderr
    assert Path(etcdctl["LIST"]).read_text() == listing.splitlines(keepends=True)[0]
    res = subprocess.run(["bash", "-c", script], env=etcdctl, capture_output=True, text=True)
    assert res.returncode == 0 and "nothing to remove" in res.stdout
    os.remove(etcdctl["LIST"])  # etcd did not answer
    assert subprocess.run(["bash", "-c", script], env=etcdctl, capture_output=True, text=True).returncode != 0
