"""`etcd install` (and `up`, which uses it) never changes the etcd version of a member that holds data."""

from __future__ import annotations

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcd import EtcdHostFacts
from kubeforge.workflows.etcd.install import refuse_version_change
from tests.factories import make_cluster


def facts(cluster, version: str | None, *, has_data: bool = True) -> dict:
    return {h.name: EtcdHostFacts(h.name, binary_version=version, active=has_data, has_data=has_data)
            for h in cluster.etcd_members}


def test_members_on_the_inventorys_version_pass(tmp_path):
    c = make_cluster(tmp_path, etcd_version="3.5.16")
    refuse_version_change(c, facts(c, "3.5.16"))


def test_members_without_data_may_get_any_version_a_new_cluster_starts_from_scratch(tmp_path):
    c = make_cluster(tmp_path, etcd_version="3.5.16")
    refuse_version_change(c, facts(c, "3.4.23", has_data=False))


def test_an_inventory_older_than_the_running_members_is_refused_with_the_way_out(tmp_path):
    c = make_cluster(tmp_path, etcd_version="3.4.23")
    with pytest.raises(SafetyRefusal) as e:
        refuse_version_change(c, facts(c, "3.5.16"))
    assert "runs 3.5.16" in str(e.value) and "3.4.23" in str(e.value)
    assert "spec.etcd.version" in e.value.hint


def test_an_inventory_newer_than_the_running_members_points_at_etcd_upgrade(tmp_path):
    c = make_cluster(tmp_path, etcd_version="3.5.16")
    with pytest.raises(SafetyRefusal) as e:
        refuse_version_change(c, facts(c, "3.4.23"))
    assert "kubeforge etcd upgrade" in e.value.hint and "--to 3.5.16" in e.value.hint
