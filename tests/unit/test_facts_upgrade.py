"""A node's Kubernetes packages, holds and API server manifest (kubeforge.facts.upgrade) and the
kubeadm versions a package source offers, on recorded outputs."""

from __future__ import annotations

from pathlib import Path

from kubeforge.facts.upgrade import parse_machine, parse_madison
from kubeforge.model.versions import parse_kube

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
V133, V134, V135 = parse_kube("1.33.5"), parse_kube("1.34.2"), parse_kube("1.35.1")


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


def test_the_machine_probe_reads_installed_versions_holds_and_the_api_server_manifest():
    m = parse_machine("cp-1", fx("upgrade_machine", "control-plane"))
    assert m.packages == {"kubeadm": V134, "kubelet": V133}  # kubeadm held (hi); kubectl removed (rc)
    assert m.held == {"kubeadm", "kubelet"}
    assert m.apiserver == V134


def test_a_machine_without_kubeadm_kubelet_or_a_manifest_has_none_of_them():
    m = parse_machine("runner", fx("upgrade_machine", "runner"))
    assert "kubeadm" not in m.packages and "kubelet" not in m.packages
    assert m.held == frozenset() and m.apiserver is None


def test_output_that_is_not_the_probes_reads_as_nothing_installed():
    m = parse_machine("w", fx("upgrade_machine", "garbage"))
    assert (m.packages, m.held, m.apiserver) == ({}, frozenset(), None)


def test_madison_output_lists_the_offered_upstream_versions():
    text = ("   kubeadm | 1.35.1-1.1 | http://10.77.4.1:8470/kubernetes/v1.35/deb  Packages\n"
            "   kubeadm | 1.34.2-1.1 | http://10.77.4.1:8470/kubernetes/v1.34/deb  Packages\n"
            "W: something\n")
    assert parse_madison(text) == {V134, V135}
