"""The etcd upgrade plan as data: snapshot first, the warning of --allow-older-patch, each hop rolled
with the leader last and every mutating step guarded, a cluster-version gate after each hop."""

from __future__ import annotations

from kubeforge.model.versions import parse_etcd
from kubeforge.plan.etcd.upgrade import upgrade_phases
from kubeforge.plan.phase import Plan
from kubeforge.plan.steps import GateStep, LocalStep, RunStep
from kubeforge.ui.plan_view import plan_lines
from tests.factories import make_cluster


def _plan(tmp_path, hops, *, leader="etcd-2", warning=None, n_etcd=3):
    cluster = make_cluster(tmp_path, etcd_version="3.4.23", n_etcd=n_etcd)
    phases = upgrade_phases(cluster, [parse_etcd(h) for h in hops], leader, lambda: True, warning=warning)
    return Plan(f"etcd upgrade {hops[-1]}", tuple(phases))


def test_every_member_lane_is_recover_move_leader_install_restart_gate_with_guards(tmp_path):
    plan = _plan(tmp_path, ["3.5.16"])
    roll = next(p for p in plan.phases if p.name == "UpgradeEtcd-3.5.16")
    assert [lane.host for lane in roll.lanes] == ["etcd-1", "etcd-3", "etcd-2"]  # the leader last
    for lane in roll.lanes:
        titles = [s.title for s in lane.steps]
        assert titles == ["Recover an interrupted package install", "Move etcd leadership to another member",
                          "Install etcd 3.5.16", "Restart etcd 3.5.16", "Wait for etcd healthy on 3.5.16"]
        assert all(s.unless is not None for s in lane.steps if isinstance(s, RunStep))
        gate = lane.steps[-1]
        assert isinstance(gate, GateStep) and f"{lane.host} on 3.5.16" in gate.what
    restart = roll.lanes[0].steps[3]
    # a member whose etcd process already answers as 3.5.16 is not restarted again on a re-run
    assert "endpoint status" in restart.unless.script and "w=3.5.16" in restart.unless.script


def test_each_hop_ends_with_a_gate_on_the_cluster_version_of_its_minor(tmp_path):
    plan = _plan(tmp_path, ["3.4.37", "3.5.16"])
    assert [p.name for p in plan.phases] == ["SnapshotEtcd", "UpgradeEtcd-3.4.37", "CheckEtcdClusterVersion-3.4.37",
                                             "UpgradeEtcd-3.5.16", "CheckEtcdClusterVersion-3.5.16"]
    gate = plan.phases[-1].steps[0]
    assert isinstance(gate, GateStep) and gate.what == "etcd cluster version 3.5 with every member on 3.5.16"
    assert 'etcd_cluster_version{cluster_version=' in gate.probe.script and "[ \"$cv\" = 3.5 ]" in gate.probe.script


def test_the_snapshot_comes_before_anything_touches_a_member(tmp_path):
    plan = _plan(tmp_path, ["3.5.30"])
    first = plan.steps[0]
    assert isinstance(first, LocalStep) and first.title == "Snapshot etcd and verify it"


def test_allow_older_patch_puts_its_warning_in_the_plan_before_the_snapshot(tmp_path, caplog):
    warning = "--allow-older-patch: upgrading 3.4.23 -> 3.5 without 3.4.37, the latest 3.4 patch"
    plan = _plan(tmp_path, ["3.5.16"], warning=warning)
    assert plan.phases[0].name == "AcceptOlderPatch" and plan.phases[1].name == "SnapshotEtcd"
    printed = "\n".join(str(line) for line in plan_lines(plan))
    assert f"Warning: {warning}" in printed
    with caplog.at_level("WARNING", logger="kubeforge.etcd.upgrade"):
        assert plan.phases[0].steps[0].fn() is False  # reported unchanged; the run log keeps the warning
    assert warning in caplog.text


def test_a_single_member_has_nobody_to_hand_leadership_to(tmp_path):
    plan = _plan(tmp_path, ["3.5.30"], leader="etcd-1", n_etcd=1)
    titles = [s.title for s in plan.phases[1].steps]
    assert "Move etcd leadership to another member" not in titles and "Restart etcd 3.5.30" in titles


def test_leadership_goes_to_a_member_already_on_the_hop_when_there_is_one(tmp_path):
    plan = _plan(tmp_path, ["3.5.16"])
    move = next(s for s in plan.steps if s.title == "Move etcd leadership to another member" and s.host == "etcd-2")
    script = move.command.script
    assert "move-leader" in script and "-v w=3.5.16" in script
    assert "https://10.77.4.11:2379,https://10.77.4.13:2379" in script  # the other members, not itself
    # the step is skipped unless this member leads and is not on the hop yet
    assert '$5 != "true" || $3 == w' in move.unless.script


def test_every_script_the_upgrade_runs_is_valid_bash(tmp_path):
    import subprocess

    from kubeforge.facts.etcd_upgrade import auth_probe_command, offered_versions_command

    cluster = make_cluster(tmp_path, etcd_version="3.4.23")
    commands = [offered_versions_command(cluster), auth_probe_command(cluster, cluster.etcd_members[0], (3, 5))]
    for step in _plan(tmp_path, ["3.4.37", "3.5.16"]).steps:
        for c in (getattr(step, "command", None), getattr(step, "unless", None), getattr(step, "probe", None)):
            if c is not None and c.script is not None:
                commands.append(c)
    assert len(commands) > 20
    for c in commands:
        res = subprocess.run(["bash", "-n"], input=c.script, capture_output=True, text=True)
        assert res.returncode == 0, f"{c.description}: {res.stderr}\n{c.script}"


def test_from_release_archives_a_lane_pushes_and_unpacks_the_hop_and_leaves_dpkg_alone(tmp_path):
    import dataclasses
    import hashlib

    from kubeforge.plan.etcd.source import archive_for, cached_archive, cached_sums

    base = make_cluster(tmp_path, etcd_version="3.5.16")
    cluster = dataclasses.replace(base, etcd=dataclasses.replace(base.etcd, release_url="http://10.77.4.1/etcd-releases"))
    archive = archive_for(cluster, "3.5.30")
    content = b"the verified 3.5.30 archive"
    cached_archive(cluster, archive).parent.mkdir(parents=True)
    cached_archive(cluster, archive).write_bytes(content)
    cached_sums(cluster, archive).write_text(f"{hashlib.sha256(content).hexdigest()}  {archive.name}\n")
    phases = upgrade_phases(cluster, [parse_etcd("3.5.30")], "etcd-1", lambda: True, arches={"etcd-2": "amd64"})
    lane = next(lane for lane in phases[1].lanes if lane.host == "etcd-2")
    assert [s.title for s in lane.steps] == ["Move etcd leadership to another member", f"Push {archive.name}",
                                             "Install etcd 3.5.30", "Restart etcd 3.5.30",
                                             "Wait for etcd healthy on 3.5.30"]
    assert lane.steps[1].file.content == content


def test_a_resume_after_every_member_reached_the_target_plans_the_last_hops_steps_under_their_ids(tmp_path):
    """--resume of a run that failed in its final checks (issue 10's fault matrix: SSH cut during the
    cluster-version gate): the same step ids as the run being resumed, so its journal skips what was
    done and the checks left run; no second snapshot."""
    from kubeforge.plan.etcd.upgrade import finish_phases

    cluster = make_cluster(tmp_path)
    hops = [parse_etcd("3.5.16")]
    original = Plan("etcd upgrade 3.5.16", tuple(upgrade_phases(cluster, hops, "etcd-1", lambda: True)))
    finish = Plan("etcd upgrade 3.5.16", tuple(finish_phases(cluster, hops[-1], "etcd-1")))
    ids = [s.id for s in finish.steps]
    assert ids == [s.id for s in original.steps if not isinstance(s, LocalStep)]
    assert not any(isinstance(s, LocalStep) for s in finish.steps)
    assert ids[-1].startswith("CheckEtcdClusterVersion-3.5.16/")
