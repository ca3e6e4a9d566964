"""`up` never changes the Kubernetes version of a node that has joined (that is `upgrade`'s job)."""

from __future__ import annotations

import dataclasses

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.types import Membership, Packages
from kubeforge.workflows.up import refuse_kubernetes_version_change
from tests.factories import make_cluster
from tests.unit.test_up_planner import RUNNER


def facts_for(cluster, kubelet: str, *, joined: bool = True) -> dict:
    return {h.name: dataclasses.replace(RUNNER, host=h.name, packages=Packages(packages={"kubelet": f"{kubelet}-1.1"}),
                                        membership=Membership(kubelet_conf=joined))
            for h in cluster.nodes}


def test_joined_nodes_on_the_inventorys_version_pass(tmp_path):
    c = make_cluster(tmp_path, version="1.34.2")
    refuse_kubernetes_version_change(c, facts_for(c, "1.34.2"))


def test_hosts_that_never_joined_may_hold_any_packages(tmp_path):
    c = make_cluster(tmp_path, version="1.34.2")
    refuse_kubernetes_version_change(c, facts_for(c, "1.35.1", joined=False))


def test_an_inventory_left_behind_after_an_upgrade_is_refused_instead_of_downgrading(tmp_path):
    c = make_cluster(tmp_path, version="1.33.6")
    with pytest.raises(SafetyRefusal) as e:
        refuse_kubernetes_version_change(c, facts_for(c, "1.34.2"))
    assert "runs 1.34.2" in str(e.value) and "spec.kubernetesVersion" in e.value.hint


def test_a_newer_inventory_points_at_kubeforge_upgrade(tmp_path):
    c = make_cluster(tmp_path, version="1.35.1")
    with pytest.raises(SafetyRefusal) as e:
        refuse_kubernetes_version_change(c, facts_for(c, "1.34.2"))
    assert "kubeforge upgrade" in e.value.hint and "--to 1.35.1" in e.value.hint
