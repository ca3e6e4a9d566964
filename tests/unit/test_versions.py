"""Version parsing, ordering, and the facts of versions.yaml (minors, kubeadm API, etcd, pause, sources)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kubeforge.model.versions import (
    Version,
    VersionError,
    etcd_minors,
    is_supported_etcd,
    is_supported_kube,
    kube_minors,
    kubeadm_api_version,
    kubeadm_config_apis,
    kubeadm_etcd,
    parse_etcd,
    parse_kube,
    pause_image,
    raw_data,
    supported_kube_minors,
    upgrade_from_kube_minors,
    version_facts,
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


def test_upstream_supported_minors_are_1_35_to_1_37_and_1_33_1_34_are_kept_to_upgrade_from():
    assert supported_kube_minors() == ["1.35", "1.36", "1.37"]
    assert upgrade_from_kube_minors() == ["1.33", "1.34"]
    assert is_supported_kube(parse_kube("1.37.1")) and not is_supported_kube(parse_kube("1.32.10"))
    assert is_supported_etcd(parse_etcd("3.7.1")) and not is_supported_etcd(parse_etcd("3.3.0"))


@pytest.mark.parametrize(
    ("version", "apis"),
    [("1.35.1", ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")),
     ("1.36.5", ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")),
     ("1.37.1", ("kubeadm.k8s.io/v1beta4",))],
)
def test_kubeadm_1_37_reads_only_v1beta4_and_every_minor_renders_v1beta4(version, apis):
    assert kubeadm_config_apis(parse_kube(version)) == apis
    assert kubeadm_api_version(parse_kube(version)) == "kubeadm.k8s.io/v1beta4"


def test_kubeadm_etcd_follows_the_kubernetes_minor():
    assert [str(kubeadm_etcd(parse_kube(v))) for v in ("1.33.5", "1.35.1", "1.36.5", "1.37.1")] == \
        ["3.5.24", "3.6.6", "3.6.9", "3.7.0"]
    assert str(kube_minors()[(1, 36)].min_external_etcd) == "3.5.24"
    assert pause_image(parse_kube("1.37.0")) == "registry.k8s.io/pause:3.10.2"


def test_etcd_floors_are_3_5_32_before_3_6_and_3_6_11_before_3_7_and_3_4_is_end_of_life():
    m = etcd_minors()
    assert (str(m[(3, 5)].exit_floor), str(m[(3, 6)].exit_floor)) == ("3.5.32", "3.6.11")
    assert m[(3, 4)].support == "upgrade-from" and m[(3, 5)].v2store_check_before_exit


def test_every_fact_of_a_minor_names_its_source():
    for name, d in raw_data()["kubernetes"]["minors"].items():
        assert d.get("sources", {}).get("kubeadmEtcd") or d.get("sources", {}).get("kubeadmConfigAPIs"), name
    for name, d in raw_data()["etcd"]["minors"].items():
        assert d["sources"]["latestRelease"], name
        if d.get("exitFloor"):
            assert "etcd.io/docs" in d["sources"]["exitFloor"], name


def test_version_facts_hold_everything_and_leave_removed_apis_to_their_owner():
    facts = version_facts()
    assert set(facts) >= {"kubernetes", "etcd", "operatingSystems", "removedAPIs"}
    assert "read from the package source" in facts["kubernetes"]["latestPatch"]
    assert facts["operatingSystems"]["supported"]["debian"] == ["11", "12", "13"]


def test_no_module_hard_codes_a_kubernetes_or_etcd_version_the_data_gives():
    """Version numbers live in versions.yaml (or come from the package source): no string constant in
    kubeforge's code is a Kubernetes or etcd version (examples in docstrings are prose, not constants)."""
    root = Path(__file__).resolve().parents[2] / "kubeforge"
    version = re.compile(r"^v?(1\.\d\d|3\.\d)\.\d+(-\d+)?$")
    found = [f"{p.relative_to(root)}:{node.lineno} {node.value!r}" for p in root.rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and version.match(node.value)]
    assert found == []
