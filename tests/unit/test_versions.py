"""Version parsing, ordering, the supported table and the kubeadm API choice."""

from __future__ import annotations

import pytest

from kubeforge.model.versions import (
    SUPPORTED_MINORS,
    Version,
    VersionError,
    is_supported_etcd,
    is_supported_kube,
    kubeadm_api_version,
    latest_patch,
    parse_etcd,
    parse_kube,
    supported_kube_minors,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.34.2", (1, 34, 2)), ("v1.34.2", (1, 34, 2)), (" 1.35 ", (1, 35, 0)), ("3.5.21", (3, 5, 21))],
)
def test_versions_parse_with_or_without_v_and_patch(text, expected):
    v = Version.parse(text)
    assert (v.major, v.minor, v.patch) == expected


@pytest.mark.parametrize("text", ["", "1", "1.x.2", "1.34.2-rc.0", "latest", "1.34.2.1"])
def test_malformed_versions_are_rejected_with_an_example(text):
    with pytest.raises(VersionError, match="expected X.Y.Z"):
        Version.parse(text)


def test_versions_order_numerically_not_lexically():
    assert Version.parse("1.9.0") < Version.parse("1.10.0") < Version.parse("1.10.1")
    assert sorted(map(Version.parse, ["1.35.0", "1.31.14", "1.34.2"]))[0] == Version.parse("1.31.14")


def test_version_prints_plain_and_with_v_for_kubeadm():
    v = parse_kube("1.34.2")
    assert (str(v), v.v, v.minor_str) == ("1.34.2", "v1.34.2", "1.34")


def test_supported_kubernetes_minors_cover_1_31_to_1_35():
    assert supported_kube_minors()[:5] == ["1.31", "1.32", "1.33", "1.34", "1.35"]
    assert is_supported_kube(parse_kube("1.35.0")) and not is_supported_kube(parse_kube("1.30.9"))
    assert is_supported_etcd(parse_etcd("3.5.21")) and not is_supported_etcd(parse_etcd("3.3.0"))


def test_latest_patch_comes_from_the_table():
    for minor, patch in SUPPORTED_MINORS.items():
        assert latest_patch(minor) == parse_kube(f"{minor[0]}.{minor[1]}.{patch}")


@pytest.mark.parametrize(
    ("version", "api"),
    [("1.30.5", "kubeadm.k8s.io/v1beta3"), ("1.31.0", "kubeadm.k8s.io/v1beta4"), ("1.35.1", "kubeadm.k8s.io/v1beta4")],
)
def test_kubeadm_api_version_is_v1beta4_from_1_31(version, api):
    assert kubeadm_api_version(parse_kube(version)) == api
