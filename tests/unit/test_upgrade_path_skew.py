"""Version-skew rules between API servers and kubelets, and the pre-upgrade gate."""

from __future__ import annotations

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.model.upgrade_path import check_skew, check_upgrade_skew
from kubeforge.model.versions import Version

V = Version.parse


def versions(**kw: str) -> dict[str, Version]:
    return {k.replace("_", "-"): V(v) for k, v in kw.items()}


@pytest.mark.parametrize(
    ("cps", "kubelets", "violations"),
    [
        ({"cp-1": "1.34.2"}, {"w-1": "1.34.2", "w-2": "1.31.0"}, []),
        ({"cp-1": "1.34.2", "cp-2": "1.35.1"}, {"w-1": "1.34.0"}, []),
        ({"cp-1": "1.34.2"}, {"w-1": "1.34.9"}, []),  # a newer patch of the same minor is fine
        (
            {"cp-1": "1.34.2", "cp-2": "1.35.1"},
            {"w-1": "1.35.1"},
            ["kubelet on w-1 (1.35.1) is newer than the oldest API server (cp-1 1.34.2)"],
        ),
        (
            {"cp-1": "1.35.1"},
            {"w-1": "1.31.14"},
            ["kubelet on w-1 (1.31.14) is more than 3 minors older than the oldest API server (cp-1 1.35.1)"],
        ),
        (
            {"cp-1": "1.33.6", "cp-2": "1.35.1"},
            {},
            ["control planes more than one minor apart: cp-2 runs 1.35.1, cp-1 runs 1.33.6"],
        ),
        ({}, {"w-1": "1.35.1"}, []),  # nothing to compare against
    ],
)
def test_check_skew(cps, kubelets, violations):
    assert check_skew({h: V(v) for h, v in cps.items()}, {h: V(v) for h, v in kubelets.items()}) == violations


def test_upgrading_a_kubelet_before_its_control_planes_is_refused():
    with pytest.raises(SafetyRefusal) as err:
        check_upgrade_skew(
            versions(cp_1="1.34.2"), versions(w_1="1.34.2"), kubelets_to=versions(w_1="1.35.1")
        )
    assert "w-1 kubelet -> 1.35.1 would break the version-skew policy" in str(err.value)
    assert "newer than the oldest API server" in str(err.value)


def test_upgrading_control_planes_one_minor_ahead_of_kubelets_is_allowed():
    check_upgrade_skew(
        versions(cp_1="1.34.2", cp_2="1.34.2"),
        versions(w_1="1.34.2", cp_1="1.34.2"),
        control_planes_to=versions(cp_1="1.35.1"),
    )


def test_upgrading_the_api_server_past_kubelets_three_minors_behind_is_refused():
    with pytest.raises(SafetyRefusal, match="w-1.*more than 3 minors older"):
        check_upgrade_skew(
            versions(cp_1="1.34.2"), versions(w_1="1.31.14"), control_planes_to=versions(cp_1="1.35.1")
        )


def test_a_control_plane_jumping_two_minors_ahead_of_its_peers_is_refused():
    with pytest.raises(SafetyRefusal, match="control planes more than one minor apart"):
        check_upgrade_skew(
            versions(cp_1="1.33.6", cp_2="1.33.6"), {}, control_planes_to=versions(cp_1="1.35.1")
        )


def test_a_step_that_repairs_an_existing_violation_is_not_blamed_for_it():
    # w-1 is already too old; upgrading it towards the API server must stay possible.
    check_upgrade_skew(versions(cp_1="1.35.1"), versions(w_1="1.31.0"), kubelets_to=versions(w_1="1.32.10"))
