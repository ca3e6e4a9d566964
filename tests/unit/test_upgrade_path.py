"""Kubernetes and etcd upgrade paths, table-driven."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kubeforge.errors import SafetyRefusal
from kubeforge.model.upgrade_path import check_skew, etcd_upgrade_path, upgrade_path
from kubeforge.model.versions import SUPPORTED_MINORS, EtcdVersion, KubeVersion, Version

V = Version.parse


@pytest.mark.parametrize(
    ("current", "target", "multi_hop", "expected"),
    [
        ("1.34.1", "1.34.2", False, ["1.34.2"]),  # patch: one hop
        ("1.31.0", "1.31.14", False, ["1.31.14"]),
        ("1.34.2", "1.35.1", False, ["1.35.1"]),  # next minor, any patch to any patch
        ("1.33.0", "1.34.0", False, ["1.34.0"]),
        ("1.32.4", "1.35.1", True, ["1.33.6", "1.34.2", "1.35.1"]),
        ("1.33.4", "1.35.1", True, ["1.34.2", "1.35.1"]),
        ("1.31.2", "1.35.0", True, ["1.32.10", "1.33.6", "1.34.2", "1.35.0"]),
        ("1.34.2", "1.35.1", True, ["1.35.1"]),  # multi-hop allowed but not needed
        ("v1.35.0", "v1.35.7", False, ["1.35.7"]),  # newer patch than the table knows is fine
    ],
)
def test_upgrade_path_hops(current, target, multi_hop, expected):
    path = upgrade_path(V(current), V(target), multi_hop=multi_hop)
    assert [str(v) for v in path] == expected
    assert all(isinstance(v, KubeVersion) for v in path)


def test_upgrade_path_rejects_skipping_a_minor_and_names_the_hops():
    with pytest.raises(SafetyRefusal) as err:
        upgrade_path(V("1.32.4"), V("1.35.1"))
    assert str(err.value) == "1.32.4 -> 1.35.1 skips minors; with --multi-hop the path is 1.33.6 -> 1.34.2 -> 1.35.1"
    assert err.value.exit_code == 7


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("1.34.2", "1.33.6", "1.34.2 -> 1.33.6 is a downgrade"),
        ("1.34.2", "1.34.1", "1.34.2 -> 1.34.1 is a downgrade"),
        ("1.34.2", "1.34.2", "already at 1.34.2"),
        ("1.35.1", "1.36.0", "target version 1.36.0 is not in a supported minor (supported: 1.31, 1.32, 1.33, 1.34, 1.35)"),
        ("1.29.3", "1.31.0", "current version 1.29.3 is not in a supported minor (supported: 1.31"),
        ("1.35.1", "2.0.0", "changes the major version"),
    ],
)
def test_upgrade_path_refusals_say_why(current, target, message):
    with pytest.raises(SafetyRefusal) as err:
        upgrade_path(V(current), V(target), multi_hop=True)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("3.5.21", "3.5.22", ["3.5.22"]),  # patch
        ("3.5.10", "3.5.21", ["3.5.21"]),
        ("3.5.30", "3.6.5", ["3.6.5"]),  # already on the latest 3.5 patch
        ("3.5.15", "3.6.5", ["3.5.30", "3.6.5"]),  # latest patch of the current minor first
        ("3.4.37", "3.6.0", ["3.5.30", "3.6.0"]),  # one minor at a time
        ("3.4.20", "3.6.5", ["3.4.37", "3.5.30", "3.6.5"]),
    ],
)
def test_etcd_upgrade_path_goes_one_minor_at_a_time_from_the_latest_patch(current, target, expected):
    path = etcd_upgrade_path(V(current), V(target))
    assert [str(v) for v in path] == expected
    assert all(isinstance(v, EtcdVersion) for v in path)


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        ("3.5.21", "3.4.37", "is a downgrade"),
        ("3.5.21", "3.5.21", "already at 3.5.21"),
        ("3.5.21", "3.7.0", "target etcd version 3.7.0 is not in a supported minor (supported: 3.4, 3.5, 3.6)"),
        ("3.3.9", "3.4.37", "current etcd version 3.3.9 is not in a supported minor"),
    ],
)
def test_etcd_upgrade_path_refusals_say_why(current, target, message):
    with pytest.raises(SafetyRefusal, match=re.escape(message)):
        etcd_upgrade_path(V(current), V(target))


supported = sorted(SUPPORTED_MINORS)


@given(
    st.sampled_from(supported), st.integers(0, 20), st.sampled_from(supported), st.integers(0, 20)
)
def test_every_multi_hop_path_rises_one_minor_at_a_time_and_ends_at_the_target(cur_minor, cur_patch, tgt_minor, tgt_patch):
    current, target = Version(*cur_minor, cur_patch), Version(*tgt_minor, tgt_patch)
    assume(target > current)
    path = upgrade_path(current, target, multi_hop=True)
    assert (path[-1].major, path[-1].minor, path[-1].patch) == (target.major, target.minor, target.patch)
    steps = [current, *path]
    for a, b in zip(steps, steps[1:]):
        assert a < b and b.minor - a.minor <= 1
    assert check_skew({"cp-1": path[0]}, {"w-1": current}) == []  # kubelets may trail the first hop


def test_the_same_version_is_refused_whatever_version_class_each_side_uses():
    with pytest.raises(SafetyRefusal, match="already at 1.34.2"):
        upgrade_path(KubeVersion(1, 34, 2), Version.parse("1.34.2"))
    with pytest.raises(SafetyRefusal, match="already at 3.5.21"):
        etcd_upgrade_path(EtcdVersion(3, 5, 21), "3.5.21")
