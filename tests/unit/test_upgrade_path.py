"""Kubernetes and etcd upgrade paths: intermediate patches from what the package source offers,
etcd's floors and minors from versions.yaml."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kubeforge.errors import SafetyRefusal
from kubeforge.model.upgrade_path import check_skew, etcd_upgrade_path, upgrade_path
from kubeforge.model.versions import EtcdVersion, KubeVersion, Version, kube_minors

V = Version.parse
# What a package source offers in these tests (the lab mirror offers a subset like it).
OFFERED = [V(v) for v in ("1.33.5", "1.33.6", "1.34.2", "1.34.9", "1.35.1", "1.35.9", "1.36.4", "1.36.5", "1.37.0", "1.37.1")]


@pytest.mark.parametrize(
    ("current", "target", "multi_hop", "expected"),
    [
        ("1.34.1", "1.34.2", False, ["1.34.2"]),  # patch: one hop
        ("1.34.2", "1.35.1", False, ["1.35.1"]),  # next minor, any patch to any patch
        ("1.33.0", "1.34.0", False, ["1.34.0"]),
        ("1.33.4", "1.35.1", True, ["1.34.9", "1.35.1"]),  # crossed at the newest 1.34 offered
        ("1.35.1", "1.37.1", True, ["1.36.5", "1.37.1"]),
        ("1.33.5", "1.37.0", True, ["1.34.9", "1.35.9", "1.36.5", "1.37.0"]),
        ("1.34.2", "1.35.1", True, ["1.35.1"]),  # multi-hop allowed but not needed
        ("v1.35.0", "v1.35.7", False, ["1.35.7"]),
    ],
)
def test_upgrade_path_hops(current, target, multi_hop, expected):
    path = upgrade_path(V(current), V(target), multi_hop=multi_hop, offered=OFFERED)
    assert [str(v) for v in path] == expected
    assert all(isinstance(v, KubeVersion) for v in path)


def test_upgrade_path_rejects_skipping_a_minor_and_names_the_hops():
    with pytest.raises(SafetyRefusal) as err:
        upgrade_path(V("1.33.5"), V("1.35.1"), offered=OFFERED)
    assert str(err.value) == "1.33.5 -> 1.35.1 skips minors; with --multi-hop the path is 1.34.9 -> 1.35.1"
    assert "--multi-hop" in err.value.hint and "constants.go" in err.value.hint
    assert err.value.exit_code == 7


def test_the_latest_patch_of_an_intermediate_minor_is_what_the_source_offers_not_a_table():
    few = [V("1.36.1"), V("1.37.1")]
    assert [str(v) for v in upgrade_path(V("1.35.1"), V("1.37.1"), multi_hop=True, offered=few)] == ["1.36.1", "1.37.1"]


def test_a_hop_the_source_lacks_is_refused_naming_the_source():
    with pytest.raises(SafetyRefusal) as err:
        upgrade_path(V("1.35.1"), V("1.37.1"), multi_hop=True, offered=[V("1.37.1")], source="the mirror http://m")
    assert "passes through Kubernetes 1.36, and the mirror http://m offers no 1.36 kubeadm" in str(err.value)
    assert err.value.exit_code == 7


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("1.34.2", "1.33.6", "1.34.2 -> 1.33.6 is a downgrade"),
        ("1.34.2", "1.34.1", "1.34.2 -> 1.34.1 is a downgrade"),
        ("1.34.2", "1.34.2", "already at 1.34.2"),
        ("1.37.1", "1.38.0", "target version 1.38.0: Kubernetes 1.38 is not a minor kubeforge knows (known: 1.33, 1.34, 1.35, 1.36, 1.37"),
        ("1.29.3", "1.35.0", "current version 1.29.3: Kubernetes 1.29 is not a minor kubeforge knows"),
        ("1.35.1", "2.0.0", "changes the major version"),
    ],
)
def test_upgrade_path_refusals_say_why(current, target, message):
    with pytest.raises(SafetyRefusal) as err:
        upgrade_path(V(current), V(target), multi_hop=True, offered=OFFERED)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("3.5.21", "3.5.22", ["3.5.22"]),  # patch
        ("3.5.10", "3.5.33", ["3.5.33"]),
        ("3.5.33", "3.6.14", ["3.6.14"]),  # already on the latest 3.5 patch
        ("3.5.32", "3.6.14", ["3.5.33", "3.6.14"]),  # at the floor: the latest patch of the minor first
        ("3.6.11", "3.7.1", ["3.6.14", "3.7.1"]),
        ("3.4.23", "3.5.33", ["3.4.45", "3.5.33"]),  # 3.4 (end of life) still upgrades out to 3.5
    ],
)
def test_etcd_upgrade_path_goes_through_the_latest_patch_of_the_minor_first(current, target, expected):
    path = etcd_upgrade_path(V(current), V(target))
    assert [str(v) for v in path] == expected
    assert all(isinstance(v, EtcdVersion) for v in path)


@pytest.mark.parametrize(
    ("current", "target", "message", "next_command"),
    [
        ("3.5.30", "3.6.14", "every 3.5 member must run 3.5.32 or later before 3.6", "--to 3.5.33`"),
        ("3.6.10", "3.7.1", "every 3.6 member must run 3.6.11 or later before 3.7", "--to 3.6.14`"),
        ("3.4.45", "3.6.14", "etcd 3.4.45 -> 3.6.14 skips etcd 3.5: etcd upgrades one minor at a time and 3.6 refuses 3.4 data",
         "--to 3.5.33`"),
        ("3.5.33", "3.7.1", "skips etcd 3.6", "--to 3.6.14`"),
    ],
)
def test_etcd_upgrades_below_a_floor_or_across_two_minors_are_refused_naming_the_rule_source_and_next_command(
        current, target, message, next_command):
    for flag in (False, True):  # --allow-older-patch lowers no floor and skips no minor
        with pytest.raises(SafetyRefusal) as err:
            etcd_upgrade_path(V(current), V(target), allow_older_patch=flag)
        assert message in str(err.value) and "etcd.io/docs" in str(err.value)
        assert "kubeforge etcd upgrade" in err.value.hint and next_command in err.value.hint
        assert err.value.exit_code == 7


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("3.5.21", "3.4.37", "is a downgrade"),
        ("3.5.21", "3.5.21", "already at 3.5.21"),
        ("3.5.33", "3.8.0", "target etcd version 3.8.0 is not in a minor kubeforge knows (known: 3.4, 3.5, 3.6, 3.7"),
        ("3.3.9", "3.4.37", "current etcd version 3.3.9 is not in a minor kubeforge knows"),
    ],
)
def test_etcd_upgrade_path_refusals_say_why(current, target, message):
    with pytest.raises(SafetyRefusal, match=re.escape(message)):
        etcd_upgrade_path(V(current), V(target))


supported = sorted(kube_minors())


@given(
    st.sampled_from(supported), st.integers(0, 20), st.sampled_from(supported), st.integers(0, 20)
)
def test_every_multi_hop_path_rises_one_minor_at_a_time_and_ends_at_the_target(cur_minor, cur_patch, tgt_minor, tgt_patch):
    current, target = Version(*cur_minor, cur_patch), Version(*tgt_minor, tgt_patch)
    assume(target > current)
    path = upgrade_path(current, target, multi_hop=True, offered=OFFERED)
    assert (path[-1].major, path[-1].minor, path[-1].patch) == (target.major, target.minor, target.patch)
    steps = [current, *path]
    for a, b in zip(steps, steps[1:], strict=False):
        assert a < b and b.minor - a.minor <= 1
    assert check_skew({"cp-1": path[0]}, {"w-1": current}) == []  # kubelets may trail the first hop


def test_the_same_version_is_refused_whatever_version_class_each_side_uses():
    with pytest.raises(SafetyRefusal, match="already at 1.34.2"):
        upgrade_path(KubeVersion(1, 34, 2), Version.parse("1.34.2"))
    with pytest.raises(SafetyRefusal, match="already at 3.5.21"):
        etcd_upgrade_path(EtcdVersion(3, 5, 21), "3.5.21")
