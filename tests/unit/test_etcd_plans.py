"""The etcd phases as data: what install, restore and membership changes plan, and what they refuse."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcd import EtcdHostFacts, parse_probe
from kubeforge.model import RenderedFile
from kubeforge.plan.etcd.install import InstallInput, MemberInput, config_sha, install_phases
from kubeforge.plan.etcd.membership import ListedMember, decide
from kubeforge.plan.etcd.restore import RestoreInput, restore_command, restore_phases
from kubeforge.plan.phase import Plan
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from tests.factories import make_cluster

PROBE_INSTALLED = """@@pkg
ii |3.4.23-4+b5
@@bin
3.4.23
@@active
active
@@data
yes
@@stamp
abc123
@@env
ETCD_INITIAL_CLUSTER="etcd-1=https://10.77.4.11:2380,etcd-2=https://10.77.4.12:2380"
ETCD_INITIAL_CLUSTER_STATE="new"
ETCD_INITIAL_CLUSTER_TOKEN="test"
@@restore
@@end
"""

PROBE_FRESH = "@@pkg\n@@bin\n@@active\ninactive\n@@data\nno\n@@stamp\n@@env\n@@restore\n@@end\n"

PROBE_35 = PROBE_FRESH.replace("@@restore\n", "@@restore\netcdutl\n--bump-revision\n--mark-compacted\n")


def test_probe_reads_an_installed_running_bootstrapped_member():
    f = parse_probe("etcd-1", PROBE_INSTALLED)
    assert f.installed_at("3.4.23") and not f.installed_at("3.4.22")
    assert f.active and f.has_data and f.stamp == "abc123"
    assert f.initial["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert f.initial["ETCD_INITIAL_CLUSTER"].startswith("etcd-1=https://")
    assert not f.etcdutl


def test_probe_reads_a_fresh_machine_and_the_restore_tool_of_etcd_35():
    fresh = parse_probe("etcd-2", PROBE_FRESH)
    assert fresh.version is None and not fresh.active and not fresh.has_data and fresh.stamp == ""
    new = parse_probe("etcd-3", PROBE_35)
    assert new.etcdutl and new.restore_flags == ("--bump-revision", "--mark-compacted")


def test_probe_refuses_output_cut_short():
    with pytest.raises(ValueError, match="incomplete"):
        parse_probe("etcd-1", "@@pkg\nii |3.4.23\n@@bin\n")


def _inputs(cluster, facts_for, *, exists, leader=None):
    members = []
    for h in cluster.etcd_members:
        files = (RenderedFile("/etc/etcd/etcd.env", f"ETCD_NAME={h.name}\n".encode()),)
        members.append(MemberInput(h, (), files, facts_for(h, config_sha(files))))
    return InstallInput(cluster, tuple(members), cluster_exists=exists, leader=leader)


def _plan(inp) -> Plan:
    return Plan("etcd install", tuple(install_phases(inp)))


def test_a_new_cluster_starts_every_member_at_once_then_waits_for_health(tmp_path):
    cluster = make_cluster(tmp_path)
    plan = _plan(_inputs(cluster, lambda h, sha: EtcdHostFacts(h.name), exists=False))
    names = [p.name for p in plan.phases if not p.is_noop]
    assert names == ["InstallEtcdPackages", "PrepareEtcdMembers", "StartEtcdMembers", "WaitForEtcdHealthy", "RecordEtcdConfig"]
    start = next(p for p in plan.phases if p.name == "StartEtcdMembers")
    assert start.strategy.kind == "parallel" and len(start.lanes) == 3
    assert all(s.command.argv == ["systemctl", "start", "--no-block", "etcd"] for s in start.steps)
    gate = next(p for p in plan.phases if p.name == "WaitForEtcdHealthy").steps[0]
    assert isinstance(gate, GateStep) and "3 members" in gate.what


def test_a_converged_cluster_plans_no_start_restart_or_gate(tmp_path):
    cluster = make_cluster(tmp_path)
    running = lambda h, sha: EtcdHostFacts(h.name, binary_version="3.5.21", active=True, has_data=True, stamp=sha)  # noqa: E731
    plan = _plan(_inputs(cluster, running, exists=True, leader="etcd-1"))
    assert not any(isinstance(s, GateStep) for s in plan.steps)
    assert all(isinstance(s, (PutFileStep, RunStep)) for s in plan.steps)
    # every RunStep left is guarded, so it reports unchanged on a converged host
    assert all(s.unless is not None for s in plan.steps if isinstance(s, RunStep))
    assert {p.reason for p in plan.phases if p.is_noop} == {"every member runs this configuration and is active"}


def test_changed_members_of_a_running_cluster_restart_one_at_a_time_leader_last(tmp_path):
    cluster = make_cluster(tmp_path)
    changed = lambda h, sha: EtcdHostFacts(h.name, binary_version="3.5.21", active=True, has_data=True, stamp="old")  # noqa: E731
    plan = _plan(_inputs(cluster, changed, exists=True, leader="etcd-1"))
    restart = next(p for p in plan.phases if p.name == "RestartEtcdMembers")
    assert restart.strategy.kind == "rolling"
    assert [lane.host for lane in restart.lanes] == ["etcd-2", "etcd-3", "etcd-1"]
    assert all(isinstance(lane.steps[-1], GateStep) for lane in restart.lanes)


def _listed(cluster, healthy=None, extra=()):
    healthy = healthy or {}
    out = [ListedMember(f"{i:x}", h.name, (f"https://{h.internal_address}:2380",), (f"https://{h.internal_address}:2379",),
                        healthy=healthy.get(h.name, True), leader=i == 1)
           for i, h in enumerate(cluster.etcd_members, 1)]
    return out + list(extra)


def test_growing_the_inventory_adds_the_new_hosts_in_inventory_order(tmp_path):
    small, big = make_cluster(tmp_path, n_etcd=3), make_cluster(tmp_path, n_etcd=5)
    listed = _listed(small)
    # the same machines keep their addresses when the inventory grows (etcd hosts come first)
    change = decide(big, listed)
    assert [h.name for h in change.add] == ["etcd-4", "etcd-5"] and not change.remove


def test_shrinking_removes_dead_members_first_and_the_leader_last(tmp_path):
    big, small = make_cluster(tmp_path, n_etcd=5), make_cluster(tmp_path, n_etcd=3)
    listed = _listed(big, healthy={"etcd-5": False})
    listed = [ListedMember(m.id, m.name, m.peer_urls, m.client_urls, healthy=m.healthy, leader=m.name == "etcd-4")
              for m in listed]
    change = decide(small, listed)
    assert [m.name for m in change.remove] == ["etcd-5", "etcd-4"]


def test_a_removal_that_would_lose_quorum_is_refused(tmp_path):
    three = make_cluster(tmp_path, n_etcd=3)
    listed = _listed(three, healthy={"etcd-3": False})
    # dropping the healthy etcd-2 leaves etcd-1 alone with the dead etcd-3: 1 healthy of 2 voters
    without_2 = replace(three, hosts=tuple(h for h in three.hosts if h.name != "etcd-2"))
    with pytest.raises(SafetyRefusal, match="below quorum"):
        decide(without_2, listed)
    # dropping the dead one instead is safe
    without_3 = replace(three, hosts=tuple(h for h in three.hosts if h.name != "etcd-3"))
    assert [m.name for m in decide(without_3, listed).remove] == ["etcd-3"]


def test_adding_and_removing_in_one_change_is_refused(tmp_path):
    three = make_cluster(tmp_path, n_etcd=3)
    listed = _listed(three)
    stranger = ListedMember("ff", "old-etcd", ("https://10.77.4.99:2380",), healthy=True)
    with pytest.raises(SafetyRefusal, match="at once"):
        decide(make_cluster(tmp_path, n_etcd=5), [*listed, stranger])


def test_no_membership_change_without_quorum_now(tmp_path):
    three = make_cluster(tmp_path, n_etcd=3)
    listed = _listed(three, healthy={"etcd-2": False, "etcd-3": False})
    with pytest.raises(SafetyRefusal, match="no quorum"):
        decide(make_cluster(tmp_path, n_etcd=5), listed)


def test_a_member_added_but_never_started_is_only_started(tmp_path):
    small, big = make_cluster(tmp_path, n_etcd=3), make_cluster(tmp_path, n_etcd=5)
    h4 = big.etcd_members[3]
    pending = ListedMember("44", "", (f"https://{h4.internal_address}:2380",), learner=True)
    change = decide(big, [*_listed(small), pending])
    assert [h.name for h in change.pending] == ["etcd-4"] and [h.name for h in change.add] == ["etcd-5"]


def _restore_input(cluster, facts):
    return RestoreInput(cluster, cluster.etcd_members, facts, (), b"snapshot", "ab" * 32, "test-20261122T080000Z-rev9",
                        "20261122T081500Z")


def test_restore_keeps_old_data_aside_and_uses_a_new_token_with_each_members_identity(tmp_path):
    cluster = make_cluster(tmp_path)
    inp = _restore_input(cluster, {})
    script = restore_command(inp, cluster.etcd_members[1]).script
    assert "mv /var/lib/etcd /var/lib/etcd.kubeforge-20261122T081500Z" in script
    assert "ETCDCTL_API=3 etcdctl snapshot restore" in script
    assert "--name=etcd-2" in script and "--initial-advertise-peer-urls=https://10.77.4.12:2380" in script
    assert "--initial-cluster-token=test-restore-20261122T081500Z" in script
    assert "etcd-1=https://10.77.4.11:2380,etcd-2=https://10.77.4.12:2380,etcd-3=https://10.77.4.13:2380" in script
    assert "rm -rf /var/lib/etcd.kubeforge" not in script


def test_restore_with_etcdutl_bumps_the_revision_and_marks_it_compacted(tmp_path):
    cluster = make_cluster(tmp_path)
    f = parse_probe("etcd-1", PROBE_35)
    script = restore_command(_restore_input(cluster, {"etcd-1": f}), cluster.etcd_members[0]).script
    assert "etcdutl snapshot restore" in script
    assert "--bump-revision=1000000000" in script and "--mark-compacted" in script


def test_restore_phases_stop_everything_before_data_is_replaced_and_start_all_together(tmp_path):
    cluster = make_cluster(tmp_path)
    inp = _restore_input(cluster, {})
    inp = RestoreInput(**{**inp.__dict__, "control_planes": cluster.control_planes})
    plan = Plan("etcd restore", tuple(restore_phases(inp)))
    order = [p.name for p in plan.phases]
    assert order == ["StopApiServers", "StopEtcd", "PushSnapshot", "RestoreMemberData", "StartEtcdMembers",
                     "WaitForEtcdHealthy", "StartApiServers", "RemoveSnapshotCopies"]
    push = [s for s in plan.steps if isinstance(s, PutFileStep)]
    assert len(push) == 3 and all(s.file.mode == 0o600 for s in push)
    assert "snapshot" not in plan.render_text().split("Push the snapshot")[1].split("\n")[0].split("bytes")[0][-12:]


def test_a_member_that_lost_its_data_is_replaced_when_the_others_keep_quorum(tmp_path):
    three = make_cluster(tmp_path, n_etcd=3)
    listed = _listed(three, healthy={"etcd-3": False})
    change = decide(three, listed, frozenset({"etcd-3"}))
    assert [m.name for m in change.remove] == ["etcd-3"] and [h.name for h in change.replace] == ["etcd-3"]
    both = _listed(three, healthy={"etcd-2": False, "etcd-3": False})
    with pytest.raises(SafetyRefusal, match="no quorum"):
        decide(three, both, frozenset({"etcd-2", "etcd-3"}))


def _run_guard(command, tmp_path, listing: str) -> int:
    """Run a guard under the real bash wrapper the transports use, with an etcdctl stand-in on PATH
    that prints ``listing`` one line per write (as etcdctl does), slowly enough that a reader which
    quits early would break the pipe."""
    import os
    import subprocess

    from kubeforge.transport.script import script_for

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "etcdctl"
    fake.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'; sleep 0.01\n" for line in listing.splitlines()))
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-s"], input=script_for(command), text=True, env=env, timeout=30).returncode


def test_membership_guards_read_the_whole_member_list_so_pipefail_never_fakes_an_answer(tmp_path):
    from kubeforge.plan.etcd.membership import add_member_phase, remove_member_phase

    cluster = make_cluster(tmp_path)
    e1, e2, e3 = cluster.etcd_members
    listing = "\n".join([f"3, started, etcd-3, https://{e3.internal_address}:2380, https://{e3.internal_address}:2379, false"]
                        + [f"{i:x}, started, m{i}, https://10.0.0.{i}:2380, https://10.0.0.{i}:2379, false" for i in range(10, 40)])
    gone = ListedMember("3", "etcd-3", (f"https://{e3.internal_address}:2380",), healthy=True)
    remove_guard = remove_member_phase(cluster, gone, e1, (e1, e2), None).steps[0].unless
    assert _run_guard(remove_guard, tmp_path, listing) != 0  # still listed: the removal must run
    assert _run_guard(remove_guard, tmp_path, listing.split("\n", 1)[1]) == 0  # gone: nothing to do
    add_guard = add_member_phase(cluster, e3, e1, ["https://x:2379"], cluster.etcd_members, register=True).steps[0].unless
    assert _run_guard(add_guard, tmp_path, listing) == 0  # already listed: no second member add
    assert _run_guard(add_guard, tmp_path, listing.split("\n", 1)[1]) != 0


def test_a_joining_member_is_enabled_at_boot_only_after_its_member_add(tmp_path):
    """A power loss of a new member between its preparation and its member add must not leave an
    etcd that starts at boot against a cluster that does not list it (issue 10, fault matrix)."""
    from kubeforge.plan.etcd.install import PrepareEtcdMembers
    from kubeforge.plan.etcd.membership import add_member_phase, clear_never_joined

    big = make_cluster(tmp_path, n_etcd=4)
    e1, h4 = big.etcd_members[0], big.etcd_members[3]
    inp = _inputs(big, lambda h, sha: EtcdHostFacts(h.name), exists=True)
    eps = [f"https://{h.internal_address}:2379" for h in big.etcd_members[:3]]
    inp = InstallInput(big, (inp.member("etcd-4"),), cluster_exists=True,
                       joining={"etcd-4": [clear_never_joined(big, h4, eps)]})
    prepare = PrepareEtcdMembers().plan(inp)
    titles = [s.title for s in prepare.steps]
    assert "Enable etcd at boot" not in titles
    assert titles.index("Clear an etcd that never joined") < titles.index("Reload systemd")
    add = add_member_phase(big, h4, e1, eps, big.etcd_members, register=True)
    order = [(s.host, s.title) for s in add.steps]
    assert order.index(("etcd-1", "Add etcd-4 as a learner")) < order.index(("etcd-4", "Enable etcd at boot")) \
        < order.index(("etcd-4", "Start etcd (joining the running cluster)"))
    # an install of a new cluster still enables every member in its preparation
    fresh = _inputs(make_cluster(tmp_path, n_etcd=3), lambda h, sha: EtcdHostFacts(h.name), exists=False)
    assert sum(s.title == "Enable etcd at boot" for s in PrepareEtcdMembers().plan(fresh).steps) == 3


def test_a_learner_left_unpromoted_by_an_interrupted_add_is_started_and_promoted(tmp_path):
    small, big = make_cluster(tmp_path, n_etcd=3), make_cluster(tmp_path, n_etcd=5)
    h4 = big.etcd_members[3]
    learner = ListedMember("44", "etcd-4", (f"https://{h4.internal_address}:2380",),
                           (f"https://{h4.internal_address}:2379",), learner=True, healthy=True)
    change = decide(big, [*_listed(small), learner])
    assert [h.name for h in change.pending] == ["etcd-4"] and [h.name for h in change.add] == ["etcd-5"]


def _clear_run(tmp_path, listing: str, etcdctl_exit: int = 0):
    """Run the never-joined cleanup under the real bash wrapper with an etcdctl stand-in printing
    ``listing`` and a systemctl stand-in recording its calls; the data dir is a real directory."""
    import os
    import subprocess

    from kubeforge.plan.etcd.membership import clear_never_joined
    from kubeforge.transport.script import script_for

    cluster = make_cluster(tmp_path, n_etcd=4)
    data = tmp_path / "var-lib-etcd"
    (data / "member" / "snap").mkdir(parents=True)
    cluster = replace(cluster, etcd=replace(cluster.etcd, data_dir=str(data)))
    h4 = cluster.etcd_members[3]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl.calls"
    (bin_dir / "etcdctl").write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in listing.splitlines())
                                     + f"exit {etcdctl_exit}\n")
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    step = clear_never_joined(cluster, h4, ["https://10.0.0.1:2379"])
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    rc = subprocess.run(["bash", "-s"], input=script_for(step.command), text=True, env=env, timeout=30).returncode
    return rc, data, calls.read_text() if calls.exists() else "", h4


def test_an_etcd_that_never_joined_is_stopped_disabled_and_its_data_moved_aside(tmp_path):
    rc, data, calls, _ = _clear_run(tmp_path, "1, started, etcd-1, https://10.0.0.1:2380, https://10.0.0.1:2379, false")
    assert rc == 0
    assert "disable --now etcd" in calls
    assert not (data / "member").exists() and data.is_dir()
    assert (data.parent / (data.name + ".kubeforge-removed") / "member" / "snap").is_dir()


def test_a_member_the_cluster_lists_keeps_its_etcd_and_data(tmp_path):
    cluster = make_cluster(tmp_path, n_etcd=4)
    a = cluster.etcd_members[3].internal_address
    rc, data, calls, _ = _clear_run(tmp_path, f"1, started, etcd-1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n"
                                              f"44, unstarted, , https://{a}:2380, , true")
    assert rc == 0 and calls == "" and (data / "member" / "snap").is_dir()


def test_a_member_list_that_cannot_be_read_clears_nothing(tmp_path):
    rc, data, calls, _ = _clear_run(tmp_path, "", etcdctl_exit=1)
    assert rc != 0 and calls == "" and (data / "member" / "snap").is_dir()


def test_a_member_removed_by_a_run_that_ended_before_stopping_it_is_found_by_the_next_run(tmp_path):
    """`etcd members` 5 -> 3 interrupted between the member remove and the stop (issue 10's fault
    matrix): the member list and the inventory no longer name etcd-4, so only kubeforge's own record
    of the removal, written before it, tells the next run that etcd-4's etcd is still to be stopped."""
    from kubeforge.workflows.etcd.members import _note_leaving, leaving_path, left_behind

    big, small = make_cluster(tmp_path, n_etcd=5), make_cluster(tmp_path, n_etcd=3)
    listed5 = _listed(big)
    gone = tuple(m for m in listed5 if m.name in ("etcd-4", "etcd-5"))
    assert _note_leaving(small, gone)() is False  # changes nothing on a host: reported unchanged
    assert leaving_path(small).stat().st_mode & 0o777 == 0o600
    # before the member remove ran they are still listed: nothing left behind
    assert left_behind(small, listed5) == ()
    # etcd-4 removed, etcd-5 not yet: only etcd-4 is left to stop
    listed4 = [m for m in listed5 if m.name != "etcd-4"]
    (left,) = left_behind(small, listed4)
    assert (left.id, left.name, left.address) == (gone[0].id, "etcd-4", big.etcd_members[3].internal_address)
    # an inventory that takes etcd-4 back: it is added again (and cleared then), not retired
    assert [m.name for m in left_behind(make_cluster(tmp_path, n_etcd=4), listed4)] == []


def test_an_unreadable_record_of_leaving_members_retires_nothing(tmp_path):
    from kubeforge.workflows.etcd.members import leaving_path, left_behind

    small = make_cluster(tmp_path, n_etcd=3)
    leaving_path(small).parent.mkdir(parents=True, exist_ok=True)
    leaving_path(small).write_text("{not json")
    assert left_behind(small, _listed(small)) == ()


def test_a_first_install_cut_short_before_the_cluster_formed_starts_every_member_together(tmp_path):
    """etcd install, a member's machine powered off before the first start (issue 10's fault
    matrix): some members hold data, none answers with a member list, none recorded an applied
    configuration. The re-run plans the new cluster's start (all at once, then one gate), never the
    rolling restart whose first gate waits for a quorum one member cannot have."""
    from kubeforge.workflows.etcd.install import never_formed

    cluster = make_cluster(tmp_path, n_etcd=3)
    half = {h.name: EtcdHostFacts(h.name, active=i == 0, has_data=i < 2) for i, h in enumerate(cluster.etcd_members)}
    assert never_formed([], half)
    inp = _inputs(cluster, lambda h, sha: half[h.name], exists=not never_formed([], half))
    names = [p.name for p in _plan(inp).phases]
    assert "StartEtcdMembers" in names and "RestartEtcdMembers" not in names
    # a cluster that formed once (a stamp), or that answers now, is never bootstrapped again
    stamped = {**half, "etcd-1": replace(half["etcd-1"], stamp="abc")}
    assert not never_formed([], stamped)
    assert not never_formed([{"name": "etcd-1", "peerURLs": ["https://x:2380"]}], half)


def test_a_joining_members_initial_cluster_is_in_inventory_order_whatever_the_member_list_order(tmp_path):
    """The member list comes ordered by member id: a re-run that finds etcd-4 added already (a power
    loss after its add) must render etcd-5's env with the same bytes as an uninterrupted run."""
    from kubeforge.plan.etcd.membership import initial_cluster

    big = make_cluster(tmp_path, n_etcd=5)
    pairs = [(h.name, f"https://{h.internal_address}:2380") for h in big.etcd_members]
    uninterrupted = initial_cluster(big, [pairs[2], pairs[0], pairs[1], pairs[3], pairs[4]])
    rerun = initial_cluster(big, [pairs[3], pairs[1], pairs[2], pairs[0], pairs[4]])
    assert uninterrupted == rerun == ",".join(f"{n}={u}" for n, u in pairs)
    stranger = ("old", "https://10.9.9.9:2380")
    assert initial_cluster(big, [stranger, *pairs]).endswith("old=https://10.9.9.9:2380")
