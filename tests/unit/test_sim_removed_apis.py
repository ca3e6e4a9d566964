"""The simulator's API server keeps what the real one keeps about how an object was written (the
version in managedFields, kubectl's last-applied annotation, a CRD's storedVersions) and serves API
versions per its minor: `kubectl apply` in a version that minor no longer serves fails like kubectl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_sim_cli import V34, V35, Lab, env  # noqa: F401  (env: the fixture Lab needs)

SVM = """apiVersion: storagemigration.k8s.io/{v}
kind: StorageVersionMigration
metadata:
  name: migrate
spec:
  resource: {{group: flowcontrol.apiserver.k8s.io, version: v1, resource: flowschemas}}
"""
VAC = """apiVersion: storage.k8s.io/{v}
kind: VolumeAttributesClass
metadata:
  name: gold
driverName: csi.example.com
"""
CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {{kind: Widget, plural: widgets}}
  scope: Namespaced
  versions:
  - {{name: {v}, served: true, storage: true}}
"""


@pytest.fixture(params=[V34])
def cluster(env: Path, request):  # noqa: F811
    lab = Lab(env, version=request.param)
    lab.init()
    yield lab
    lab.close()


def apply(lab: Lab, text: str, *flags: str):
    path = lab.base / "obj.yaml"
    path.write_text(text)
    return lab.kubectl("apply", "-f", str(path), *flags)


def get(lab: Lab, *argv: str) -> dict:
    rc, out, err = lab.kubectl("get", *argv, "-o", "json")
    assert rc == 0, err
    return json.loads(out)


def writers(obj: dict) -> list[tuple[str, str, str]]:
    return [(f["manager"], f["operation"], f["apiVersion"]) for f in obj["metadata"]["managedFields"]]


@pytest.mark.parametrize("cluster", [V35], indirect=True)
def test_apply_in_a_version_the_minor_no_longer_serves_fails_like_kubectl_and_applies_the_rest(cluster):
    rc, out, err = apply(cluster, SVM.format(v="v1alpha1") + "---\n" + VAC.format(v="v1beta1"))
    assert rc == 1
    assert ('error: resource mapping not found for name: "migrate" namespace: "" from "' in err
            and 'no matches for kind "StorageVersionMigration" in version "storagemigration.k8s.io/v1alpha1"' in err)
    assert out == "volumeattributesclass.storage.k8s.io/gold created\n"
    assert get(cluster, "storageversionmigrations.storagemigration.k8s.io", "-A")["items"] == []
    assert apply(cluster, SVM.format(v="v1beta1"))[0] == 0  # the version 1.35 serves


def test_an_object_is_served_in_the_preferred_version_and_remembers_the_version_it_was_written_in(cluster):
    assert apply(cluster, VAC.format(v="v1alpha1"))[0] == 0
    (item,) = get(cluster, "volumeattributesclasses.storage.k8s.io", "-A")["items"]
    assert item["apiVersion"] == "storage.k8s.io/v1"  # 1.34 serves v1 and prefers it
    assert writers(item) == [("kubectl-client-side-apply", "Update", "storage.k8s.io/v1alpha1")]
    last = json.loads(item["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["apiVersion"] == "storage.k8s.io/v1alpha1"


def test_a_client_side_reapply_in_a_new_version_keeps_the_old_writer_a_server_side_one_takes_over(cluster):
    apply(cluster, VAC.format(v="v1alpha1"))
    rc, out, _ = apply(cluster, VAC.format(v="v1beta1"))
    assert rc == 0 and "configured" in out
    (item,) = get(cluster, "volumeattributesclasses", "-A")["items"]
    assert writers(item) == [("kubectl-client-side-apply", "Update", "storage.k8s.io/v1alpha1"),
                             ("kubectl-client-side-apply", "Update", "storage.k8s.io/v1beta1")]
    assert apply(cluster, VAC.format(v="v1"), "--server-side")[0] == 0
    (item,) = get(cluster, "volumeattributesclasses", "-A")["items"]
    assert writers(item) == [("kubectl", "Apply", "storage.k8s.io/v1")]
    last = json.loads(item["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["apiVersion"] == "storage.k8s.io/v1"  # kubectl keeps an existing annotation current


def test_reapplying_the_same_manifest_changes_nothing(cluster):
    apply(cluster, VAC.format(v="v1beta1"))
    before = get(cluster, "volumeattributesclasses", "-A")
    rc, out, _ = apply(cluster, VAC.format(v="v1beta1"))
    assert (rc, out) == (0, "volumeattributesclass.storage.k8s.io/gold unchanged\n")
    assert get(cluster, "volumeattributesclasses", "-A") == before


def test_a_crds_stored_versions_grow_with_each_new_storage_version(cluster):
    apply(cluster, CRD.format(v="v1alpha1"))
    apply(cluster, CRD.format(v="v1"))
    crd = get(cluster, "crd", "widgets.example.com")
    assert crd["status"]["storedVersions"] == ["v1alpha1", "v1"]
    rc, _, err = apply(cluster, "apiVersion: example.com/v1alpha1\nkind: Widget\nmetadata:\n  name: w\n")
    assert rc == 1 and 'no matches for kind "Widget" in version "example.com/v1alpha1"' in err
    assert apply(cluster, "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")[0] == 0


def test_a_resource_type_the_minor_does_not_serve_is_refused_like_kubectl(cluster):
    rc, _, err = cluster.kubectl("get", "workloads.scheduling.k8s.io", "-A", "-o", "json")
    assert (rc, err) == (1, 'error: the server doesn\'t have a resource type "workloads"\n')


def test_kubeadms_config_map_holds_the_cluster_configuration_in_its_own_config_api(cluster):
    cm = get(cluster, "-n", "kube-system", "configmap", "kubeadm-config")
    assert cm["data"]["ClusterConfiguration"].startswith("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n")
    rc, _, err = cluster.kubectl("-n", "kube-system", "get", "configmap", "nothing-here", "-o", "json")
    assert (rc, err) == (1, 'Error from server (NotFound): configmaps "nothing-here" not found\n')
