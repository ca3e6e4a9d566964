"""The CNI's images: what a local network.cni.manifest runs, read with the inventory, normalized as
containerd names what it pulls, and needed on every node (kubeforge.inventory.cni_images,
kubeforge.model.images); a CNI registry the inventory does not configure is not asked by preflight."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.facts.preflight.images import registry_sources
from kubeforge.inventory import loads
from kubeforge.inventory.cni_images import manifest_images, normalize_ref
from kubeforge.model.images import images_by_host
from tests.unit.test_inventory_rules import HEAD, hosts

MANIFEST = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.io}
spec:
  versions:
    - name: v1
      schema:
        openAPIV3Schema:
          properties:
            containers: {type: array, items: {type: object}}
            example: {containers: [{image: "crd/schema-example:1"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, namespace: kube-system}
spec:
  template:
    spec:
      initContainers:
        - name: install
          image: quay.io/cni/install-cni:v1.2.0
      containers:
        - name: agent
          image: cni/agent:v1.2.0
        - name: helper
          image: busybox
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: controllers}
    spec:
      template:
        spec:
          containers:
            - name: c
              image: quay.io/cni/controllers@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            - name: again
              image: quay.io/cni/install-cni:v1.2.0
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  template: "containers: [{image: not/an-image:1}]"
"""

WANT = (
    "docker.io/cni/agent:v1.2.0",
    "docker.io/library/busybox:latest",
    "quay.io/cni/controllers@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "quay.io/cni/install-cni:v1.2.0",
)


@pytest.mark.parametrize(("ref", "normal"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("calico/node:v3.29.1", "docker.io/calico/node:v3.29.1"),
    ("index.docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"),
    ("ghcr.io/flannel-io/flannel:v0.26.4", "ghcr.io/flannel-io/flannel:v0.26.4"),
    ("localhost/cni", "localhost/cni:latest"),
    ("reg.site:5000/a/b", "reg.site:5000/a/b:latest"),
    ("quay.io/x/y:v1@sha256:ab", "quay.io/x/y@sha256:ab"),
])
def test_references_are_normalized_as_containerd_names_what_it_pulls(ref, normal):
    assert normalize_ref(ref) == normal


def test_every_pod_templates_containers_are_listed_once_and_crd_schemas_and_configmaps_are_not():
    assert manifest_images(MANIFEST) == WANT


def test_a_manifest_that_is_not_yaml_is_a_value_error_naming_the_line():
    with pytest.raises(ValueError, match=r"not YAML \(line 2\)"):
        manifest_images("kind: DaemonSet\n  bad: [\n")


def inventory(tmp_path: Path, manifest: str | None, *, packages: str = "") -> Path:
    if manifest is not None:
        (tmp_path / "cni.yaml").write_text(manifest)
    text = (HEAD + "  network:\n    cni:\n      name: custom\n      manifest: "
            + ("cni.yaml" if manifest is not None else "https://cni.example/cni.yaml") + "\n" + packages
            + hosts("cp-1 10.0.0.11 control-plane", "w-1 10.0.0.21 worker", "etcd-1 10.0.0.31 etcd"))
    (tmp_path / "inv.yaml").write_text(text)
    return tmp_path / "inv.yaml"


def load(path: Path):
    return loads(path.read_text(), file="inv.yaml", source=path)


def test_every_node_needs_the_cni_images_and_a_dedicated_etcd_member_none(tmp_path):
    res = load(inventory(tmp_path, MANIFEST))
    assert res.cluster.network.cni.images == WANT
    by_host = {h: {i.ref for i in imgs} for h, imgs in images_by_host(res.cluster).items()}
    assert set(by_host) == {"cp-1", "w-1"}
    for refs in by_host.values():
        assert set(WANT) <= refs
    assert [i.component for i in images_by_host(res.cluster)["w-1"] if i.ref in WANT] == ["cni"] * 4


def test_an_unparsable_local_manifest_is_a_warning_and_lists_no_images(tmp_path):
    res = load(inventory(tmp_path, "kind: DaemonSet\n  bad: [\n"))
    assert res.cluster.network.cni.images == ()
    [w] = [w for w in res.warnings if "cni" in w.where]
    assert w.message.startswith("'cni.yaml' is not YAML (line 2): ") and w.message.endswith(
        ": kubeforge cannot list the images it runs"), w.message


def test_a_url_manifest_with_an_offline_bundle_is_a_warning_that_it_reaches_out(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    res = load(inventory(tmp_path, None, packages=f"  packages:\n    source: offline\n    bundleDir: {bundle}\n"))
    assert res.cluster.network.cni.images == ()
    assert any("network.cni.manifest" in w.where and "kubectl on the first control plane fetches this URL" in w.message
               for w in res.warnings), res.warnings
    upstream = load(inventory(tmp_path, None))
    assert not any("fetches this URL" in w.message for w in upstream.warnings)


def test_preflight_asks_no_cni_registry_the_inventory_does_not_configure(tmp_path):
    c = load(inventory(tmp_path, MANIFEST)).cluster
    sources = registry_sources(c, WANT)
    assert sources["quay.io"].endpoints == () and sources["docker.io"].endpoints == ()
