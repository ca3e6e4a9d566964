"""An etcd host's facts (kubeforge.facts.etcd) on recorded outputs: installed, cut short, garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.facts.etcd import parse_probe, probe_command
from tests.factories import make_cluster

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


def test_an_installed_etcd_that_never_ran_has_its_version_and_no_data():
    f = parse_probe("runner", fx("etcd_host", "runner"))
    assert f.package_version == "3.4.23-4+b4" and f.binary_version == "3.4.23" and f.installed_at("3.4.23")
    assert not f.active and not f.has_data and f.stamp == "" and f.initial == {}
    assert not f.etcdutl and f.restore_flags == ()


@pytest.mark.parametrize("name", ["incomplete", "garbage"])
def test_output_cut_short_or_not_the_scripts_is_refused_naming_the_host(name):
    with pytest.raises(ValueError, match="etcd-1: etcd facts script output is incomplete"):
        parse_probe("etcd-1", fx("etcd_host", name))


def test_the_probe_only_reads_and_quotes_the_data_dir():
    script = probe_command(make_cluster()).script or ""
    for verb in ("rm ", "mv ", "systemctl start", "systemctl stop", "> /", "tee "):
        assert verb not in script
    assert "test -d /var/lib/etcd/member" in script
