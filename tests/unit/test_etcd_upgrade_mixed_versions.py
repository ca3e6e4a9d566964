"""Mixed-version etcd is never fed a raft entry an older member cannot apply: every member's server
and cluster version is learnt without a request, every request is picked by the lowest of them, and
members already crash-looping on such an entry are upgraded first instead of being refused."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

import kubeforge
from kubeforge.errors import CheckFailed
from kubeforge.facts.etcd_upgrade import auth_probe_command, member_version_command, parse_member_version
from kubeforge.facts.etcdctl import REQUESTS, UnsafeEtcdRequest, etcdctl_argv, may_send, request_for
from kubeforge.model.versions import Version
from kubeforge.plan.etcd.upgrade import upgrade_phases
from kubeforge.plan.etcd.upgrade_checks import ClusterVersions
from kubeforge.plan.steps import GateStep
from kubeforge.workflows.etcd.upgrade import crashed_way_out, decide
from tests.factories import make_cluster

# member_version_command's output on a serving member (metrics lines as etcd 3.4.23 writes them)
SERVING_34 = """@@active
active
@@metrics
etcd_cluster_version{cluster_version="3.4"} 1
etcd_server_version{server_version="3.4.23"} 1
@@panics
0
@@end
"""
SERVING_35_CLUSTER_34 = SERVING_34.replace('server_version="3.4.23"', 'server_version="3.5.16"')
SERVING_35 = SERVING_35_CLUSTER_34.replace('cluster_version="3.4"', 'cluster_version="3.5"')
# a 3.4 member that panics on every start: systemd says activating, the metrics port is closed
CRASHING_34 = "@@active\nactivating\n@@metrics\n@@panics\n7\n@@end\n"


def versions(**members: tuple[str, str | None]) -> ClusterVersions:
    """name=(installed binary version, member_version_command output or None when unreachable)."""
    return ClusterVersions(members={n: parse_member_version(n, out) if out else None for n, (_, out) in members.items()},
                           installed={n: v for n, (v, _) in members.items()})


def test_the_probe_reads_server_and_cluster_version_without_any_etcd_request():
    mv = parse_member_version("etcd-1", SERVING_35_CLUSTER_34)
    assert (mv.active, mv.server, mv.cluster, mv.apply_panics) == (True, "3.5.16", "3.4", 0)
    script = member_version_command().script
    assert "etcdctl" not in script and "/dev/tcp/127.0.0.1/2381" in script
    assert subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True).returncode == 0
    with pytest.raises(ValueError, match="incomplete"):
        parse_member_version("etcd-1", "@@active\nactive\n")


def test_one_member_still_on_3_4_makes_the_whole_cluster_3_4():
    mixed = versions(**{"etcd-1": ("3.5.16", SERVING_35_CLUSTER_34), "etcd-2": ("3.4.23", SERVING_34),
                        "etcd-3": ("3.4.23", SERVING_34)})
    assert mixed.lowest_minor == (3, 4)


def test_every_member_on_3_5_still_counts_as_3_4_until_etcd_raises_the_cluster_version():
    waiting = versions(**{n: ("3.5.16", SERVING_35_CLUSTER_34) for n in ("etcd-1", "etcd-2", "etcd-3")})
    assert waiting.lowest_minor == (3, 4)
    done = versions(**{n: ("3.5.16", SERVING_35) for n in ("etcd-1", "etcd-2", "etcd-3")})
    assert done.lowest_minor == (3, 5)


def test_a_member_that_is_not_serving_counts_as_the_binary_it_would_start():
    v = versions(**{"etcd-1": ("3.5.16", SERVING_35), "etcd-2": ("3.4.23", CRASHING_34)})
    assert v.lowest_minor == (3, 4)


def test_a_member_that_cannot_be_asked_makes_the_lowest_minor_unknown():
    v = versions(**{"etcd-1": ("3.5.16", SERVING_35), "etcd-2": ("3.5.16", None)})
    assert v.lowest_minor is None and "etcd-2: not asked" in v.describe()


def test_auth_status_is_asked_only_when_every_member_runs_3_5():
    cluster = make_cluster(etcd_version="3.4.23")
    m = cluster.etcd_members[0]
    for lowest in ((3, 4), None):  # a 3.4 member, or one that could not be asked
        script = auth_probe_command(cluster, m, lowest).script
        assert " auth status" not in script and " user list" in script
    assert " auth status" in auth_probe_command(cluster, m, (3, 5)).script


def test_a_raft_entry_newer_than_the_lowest_member_is_refused_where_every_etcdctl_line_is_built():
    cluster = make_cluster(etcd_version="3.4.23")
    ep = ["https://10.0.0.1:2379"]
    with pytest.raises(UnsafeEtcdRequest, match="etcd 3.4 members cannot apply"):
        etcdctl_argv(cluster, ep, "auth", "status")  # nobody said the cluster is 3.5: taken as 3.4
    with pytest.raises(UnsafeEtcdRequest, match="etcd 3.4 members cannot apply"):
        etcdctl_argv(cluster, ep, "auth", "status", lowest_minor=(3, 4))
    assert "status" in etcdctl_argv(cluster, ep, "auth", "status", lowest_minor=(3, 5))
    with pytest.raises(UnsafeEtcdRequest, match="not in kubeforge.facts.etcdctl.REQUESTS"):
        etcdctl_argv(cluster, ep, "defrag")


def test_only_requests_every_member_applies_are_held_to_the_lowest_minor():
    # a request only the member asked answers may be newer: at worst that member says it does not know it
    assert may_send(REQUESTS[("endpoint", "status")], (3, 0))
    assert not may_send(REQUESTS[("auth", "status")], (3, 4)) and may_send(REQUESTS[("auth", "status")], (3, 6))
    assert not may_send(REQUESTS[("member", "promote")], (3, 3)) and may_send(REQUESTS[("member", "promote")], (3, 4))


def _etcdctl_calls() -> list[tuple[str, tuple[str, ...]]]:
    """(file, leading literal words) of every etcdctl_line/etcdctl_argv/etcdctl call in kubeforge."""
    root = Path(kubeforge.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("etcdctl_line", "etcdctl_argv", "etcdctl"):
                words = []
                for a in node.args[2:]:
                    if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
                        break
                    words.append(a.value)
                if words:
                    found.append((str(path.relative_to(root)), tuple(words)))
    return found


def test_every_etcd_request_kubeforge_sends_is_in_the_table_and_safe_on_the_oldest_supported_minor():
    calls = _etcdctl_calls()
    assert len(calls) > 15  # status, health, alarms, members, move-leader, snapshot, auth, ...
    for where, words in calls:
        request = request_for(words)
        # only `auth status` may be newer, and its one caller passes the cluster's lowest minor
        assert may_send(request, None) or request.words == ("auth", "status"), (where, words)


def test_older_members_crash_looping_on_a_newer_entry_are_upgraded_first():
    v = versions(**{"etcd-1": ("3.5.16", SERVING_35_CLUSTER_34), "etcd-2": ("3.4.23", CRASHING_34),
                    "etcd-3": ("3.4.23", CRASHING_34)})
    decision = decide(v.installed, Version.parse("3.5.16"), allow_older_patch=True)
    assert crashed_way_out(decision, v, v.installed) == (["etcd-2", "etcd-3"], [])
    cluster = make_cluster(etcd_version="3.4.23")
    phases = upgrade_phases(cluster, [h.version for h in decision.hops], None, lambda: True, crashed=["etcd-2", "etcd-3"])
    names = [p.name for p in phases]
    assert names[:3] == ["CrashedOnNewerEntry", "UpgradeCrashedEtcd-3.5.16", "SnapshotEtcd"]
    assert "panic: not implemented" in phases[0].title and "upgrading them to 3.5.16 first" in phases[0].title
    lanes = {lane.host: lane.steps for lane in phases[1].lanes}
    assert list(lanes) == ["etcd-2", "etcd-3"]
    for host, steps in lanes.items():
        gate = steps[-1]
        # gated on the member itself serving, not on every member healthy (the other is still down)
        assert isinstance(gate, GateStep) and gate.what == f"{host} serving on 3.5.16 with a leader"
        assert not any("move-leader" in (s.key or "") for s in steps)


def test_a_crash_loop_that_is_not_an_interrupted_upgrade_is_refused_pointing_at_the_docs():
    # members on one version, one of them panicking: nothing kubeforge can finish by upgrading
    v = versions(**{"etcd-1": ("3.4.23", SERVING_34), "etcd-2": ("3.4.23", CRASHING_34)})
    assert v.crashing_on_apply() == []  # no newer binary in the cluster: not this failure
    v = versions(**{"etcd-1": ("3.5.16", CRASHING_34.replace("activating", "failed")),
                    "etcd-2": ("3.4.23", CRASHING_34), "etcd-3": ("3.4.23", SERVING_34)})
    decision = decide(v.installed, Version.parse("3.5.16"), allow_older_patch=True)
    with pytest.raises(CheckFailed) as err:
        crashed_way_out(decision, v, v.installed)  # the newer member does not serve: no quorum to come back to
    assert "etcd-2" in str(err.value) and "docs/etcd.md" in err.value.hint


def test_a_panic_in_the_journal_of_a_member_one_patch_behind_is_not_a_crash_loop_on_a_newer_entry():
    # a patch upgrade 3.5.16 -> 3.5.30 after a power loss: a member's journal can still hold an apply
    # panic from an earlier cluster on that machine; members a patch apart apply the same entries
    serving_3530 = SERVING_35.replace('server_version="3.5.16"', 'server_version="3.5.30"')
    stale_panic = SERVING_35.replace("@@panics\n0", "@@panics\n3")
    v = versions(**{"etcd-1": ("3.5.30", serving_3530), "etcd-2": ("3.5.16", SERVING_35),
                    "etcd-3": ("3.5.16", stale_panic)})
    assert v.members["etcd-3"].apply_panics == 3
    assert v.crashing_on_apply() == []
    decision = decide(v.installed, Version.parse("3.5.30"), allow_older_patch=True)
    assert crashed_way_out(decision, v, v.installed) == ([], [])


def _status(**healthy: bool):
    from kubeforge.workflows.etcd.status import ClusterStatus, MemberStatus

    members = [MemberStatus(name=n, endpoint="", reachable=True, healthy=h, is_leader=(i == 0)) for i, (n, h)
               in enumerate(healthy.items())]
    return ClusterStatus(members=members, member_list=[])


def test_a_member_stopped_between_install_and_restart_by_an_interrupted_run_does_not_block_its_resume():
    from kubeforge.workflows.etcd.upgrade import stopped_mid_lane

    stopped_out = "@@active\ninactive\n@@metrics\n@@panics\n0\n@@end\n"
    v = versions(**{"etcd-1": ("3.4.23", SERVING_34), "etcd-2": ("3.5.16", SERVING_35_CLUSTER_34),
                    "etcd-3": ("3.5.16", stopped_out)})
    decision = decide(v.installed, Version.parse("3.5.16"), allow_older_patch=True)
    assert stopped_mid_lane(decision, v, v.installed, _status(**{"etcd-1": True, "etcd-2": True, "etcd-3": False})) \
        == ["etcd-3"]
    # without a quorum of the others, or stopped on the old version, it is not that
    assert stopped_mid_lane(decision, v, v.installed, _status(**{"etcd-1": True, "etcd-2": False, "etcd-3": False})) == []
    old = versions(**{"etcd-1": ("3.4.23", SERVING_34), "etcd-2": ("3.5.16", SERVING_35_CLUSTER_34),
                      "etcd-3": ("3.4.23", stopped_out)})
    assert stopped_mid_lane(decision, old, old.installed, _status(**{"etcd-1": True, "etcd-2": True, "etcd-3": False})) == []


def test_a_member_left_stopped_with_the_hop_installed_is_started_first_beside_the_crashed_ones():
    # Ctrl-C while etcd-2's install ran (installing stops etcd), then a 3.5-only entry crashed etcd-3
    v = versions(**{"etcd-1": ("3.5.16", SERVING_35_CLUSTER_34),
                    "etcd-2": ("3.5.16", "@@active\ninactive\n@@metrics\n@@panics\n0\n@@end\n"),
                    "etcd-3": ("3.4.23", CRASHING_34)})
    decision = decide(v.installed, Version.parse("3.5.16"), allow_older_patch=True)
    assert crashed_way_out(decision, v, v.installed) == (["etcd-3"], ["etcd-2"])
    cluster = make_cluster(etcd_version="3.4.23")
    phases = upgrade_phases(cluster, [h.version for h in decision.hops], None, lambda: True, crashed=["etcd-3"],
                            stopped=["etcd-2"])
    assert "and starting etcd-2, left stopped with 3.5.16 installed" in phases[0].title
    assert [lane.host for lane in phases[1].lanes] == ["etcd-2", "etcd-3"]
