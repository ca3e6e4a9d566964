"""`up` refuses, before touching any host, a CNI manifest whose DaemonSet cannot run on a node of the
inventory: that node would never turn Ready."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kubeforge.errors import InputError
from kubeforge.model import CniSpec, Network, Taint
from kubeforge.plan.up.cni_placement import tolerates, untolerated
from kubeforge.workflows.up import cni_source
from tests.factories import make_cluster

CP = Taint("node-role.kubernetes.io/control-plane", None, "NoSchedule")
DB = Taint("dedicated", "db", "NoSchedule")


def daemonset(tolerations: str = "", node_selector: str = "", name: str = "calico-node") -> str:
    return f"""apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}, namespace: kube-system}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}, namespace: kube-system}}
spec:
  template:
    spec:
{tolerations}{node_selector}      containers: [{{name: x, image: x}}]
"""


def test_toleration_matching_follows_the_scheduler() -> None:
    assert tolerates([{"operator": "Exists"}], DB)
    assert tolerates([{"key": "dedicated", "operator": "Exists"}], DB)
    assert tolerates([{"key": "dedicated", "value": "db"}], DB)  # operator Equal by default
    assert not tolerates([{"key": "dedicated", "value": "web"}], DB)
    assert not tolerates([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], DB)
    assert tolerates([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                       "effect": "NoSchedule"}], CP)


def test_a_daemonset_without_tolerations_cannot_run_on_a_control_plane_or_a_tainted_worker() -> None:
    nodes = {"cp-1": ({}, (CP,)), "w-1": ({}, ()), "w-2": ({}, (DB, Taint("soft", None, "PreferNoSchedule")))}
    found = untolerated(daemonset(), nodes)
    assert [(u.node, str(u.taint), u.daemonset) for u in found] == [
        ("cp-1", "node-role.kubernetes.io/control-plane:NoSchedule", "kube-system/calico-node"),
        ("w-2", "dedicated=db:NoSchedule", "kube-system/calico-node")]
    assert untolerated(daemonset("      tolerations: [{operator: Exists}]\n"), nodes) == []


def test_a_daemonset_selecting_other_nodes_by_label_is_not_held_against_a_node() -> None:
    nodes = {"w-1": ({"pool": "gpu"}, (DB,)), "w-2": ({"pool": "db"}, (DB,))}
    manifest = daemonset(node_selector="      nodeSelector: {pool: gpu, kubernetes.io/os: linux}\n")
    assert [u.node for u in untolerated(manifest, nodes)] == ["w-1"]


def test_a_manifest_that_is_not_yaml_or_has_no_daemonset_is_not_judged() -> None:
    assert untolerated("{{ not: yaml", {"cp-1": ({}, (CP,))}) == []
    assert untolerated("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", {"cp-1": ({}, (CP,))}) == []


def test_up_refuses_a_cni_manifest_the_control_planes_taint_keeps_out_naming_node_taint_and_daemonset(
        tmp_path: Path) -> None:
    (tmp_path / "cni.yaml").write_text(daemonset())
    base = make_cluster(tmp_path, n_cp=1, n_workers=1)
    cluster = replace(base, network=Network(cni=CniSpec(manifest="cni.yaml", name="calico")))
    with pytest.raises(InputError) as e:
        cni_source(cluster)
    assert e.value.exit_code == 3
    cp = cluster.control_planes[0].name
    assert (f"node {cp}" in str(e.value) and "taint node-role.kubernetes.io/control-plane:NoSchedule not tolerated "
            "by DaemonSet kube-system/calico-node" in str(e.value) and "cni.yaml" in str(e.value))
    (tmp_path / "cni.yaml").write_text(daemonset("      tolerations: [{operator: Exists}]\n"))
    assert cni_source(cluster).content is not None
