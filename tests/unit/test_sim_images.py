"""The simulator asks for images as kubeadm and the kubelet ask containerd: present in k8s.io, pulled
through the registry containerd's hosts.toml names (real docker-registry, TLS, htpasswd; hosts.toml
rendered by kubeforge), upstream only with a default route, otherwise kubeadm's ImagePull error."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from tests.sim import image_catalog
from tests.sim import testing as T
from tests.sim.kubesim import files, host, images
from tests.sim.kubesim.kubelet import Kubelet
from tests.unit.test_bundle_images import running_containerd

V35 = "v1.35.1"
PASSWORD = "pull-secret-7d1e"  # noqa: S105 (a test registry's password)
USER = "kubeforge-pull"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine(tmp_path: Path, route: bool) -> str:
    return T.make_machine(str(tmp_path / "m"), "m", V35, route=route)


def real_containerd_machine(root: str) -> str:
    """The machine's image store is a real containerd on its own socket (not the in-process file)."""
    os.unlink(os.path.join(root, images.TEST_STORE.lstrip("/")))
    d = Path(root) / images.CONTAINERD_SOCKET.lstrip("/")
    d.parent.mkdir(parents=True, exist_ok=True)
    return str(d.parent)


def ctr_list(root: str) -> list[str]:
    with host.use_root(root):
        return images.store()._ctr("images", "ls", "-q").stdout.split()  # type: ignore[union-attr]


def test_the_catalog_shipped_with_the_simulator_is_kubeforges_version_data() -> None:
    shipped = (Path(images.__file__).parent / images.CATALOG_FILE).read_text()
    assert shipped == image_catalog.text(), "run: python -m tests.sim.image_catalog"


def test_kubeadms_list_follows_the_repository_and_drops_corednss_subpath_outside_upstream() -> None:
    facts = json.loads(image_catalog.text())["minors"]["1.35"]
    assert images.kubeadm_images(V35) == [
        f"registry.k8s.io/{c}:{V35}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    ] + [f"registry.k8s.io/coredns/coredns:{facts['coredns']}", facts["pause"], f"registry.k8s.io/etcd:{facts['etcd']}"]
    private = images.kubeadm_images(V35, "reg.site:5000/k8s", local_etcd=False)
    assert f"reg.site:5000/k8s/coredns:{facts['coredns']}" in private and not any("etcd" in r for r in private)
    assert all(r.startswith("reg.site:5000/k8s/") for r in private)


def test_an_image_containerd_already_holds_is_used_without_any_registry(tmp_path: Path) -> None:
    root = machine(tmp_path, route=False)
    ref = f"registry.k8s.io/kube-apiserver:{V35}"
    with running_containerd(Path(real_containerd_machine(root))):
        with host.use_root(root):
            images.store().add(images.build_archive(ref), ref)
            assert images.pull_checks([ref]) == []  # no route, no hosts.toml: only presence can answer
            other = images.pull_checks([f"registry.k8s.io/kube-scheduler:{V35}"])
        assert ctr_list(root) == [ref]
    assert other and "network is unreachable" in other[0][1]


def test_upstream_answers_with_a_default_route_only_for_images_that_exist_there(tmp_path: Path) -> None:
    root = machine(tmp_path, route=True)
    with host.use_root(root):
        assert images.pull_checks(images.kubeadm_images(V35)) == []
        assert images.store().has(f"registry.k8s.io/kube-proxy:{V35}")
        [(name, msg)] = images.pull_checks(["registry.k8s.io/kube-apiserver:v1.99.0"])
    assert name == "ImagePull" and msg.startswith("failed to pull image registry.k8s.io/kube-apiserver:v1.99.0: ")
    assert msg.endswith("registry.k8s.io/kube-apiserver:v1.99.0: not found")


def test_without_a_default_route_kubeadm_init_stops_at_its_image_preflight_naming_each_image(tmp_path: Path,
                                                                                             monkeypatch) -> None:
    monkeypatch.setenv("KUBESIM_API_PORT", str(free_port()))
    root = machine(tmp_path, route=False)
    (tmp_path / "init.yaml").write_text(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 127.0.0.1\n"
        "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: 1.35.1\n")
    rc, out, err = T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V35)
    assert rc == 1 and "[preflight] Pulling images required for setting up a Kubernetes cluster" in out
    for ref in images.kubeadm_images(V35):
        assert re.search(rf"\[ERROR ImagePull\]: failed to pull image {re.escape(ref)}: .*network is unreachable", err), err
    assert "error execution phase preflight" in err
    assert not os.path.exists(f"{root}/etc/kubernetes/manifests/kube-apiserver.yaml")
    assert not os.path.exists(f"{root}/etc/kubernetes/admin.conf")


def test_the_kubelet_never_starts_a_static_pod_whose_image_cannot_be_had(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KUBESIM_API_PORT", str(free_port()))
    root = machine(tmp_path, route=False)
    logged: list[str] = []
    with host.use_root(root):
        files.write_manifests(V35, "127.0.0.1", {}, f"file:{files.STATE_FILE}")
        k = Kubelet(V35, log=logged.append)
        k.sync_static_pods()
        assert not k.pod.running and k.apiserver_version is None
        assert any("ErrImagePull" in m and f"registry.k8s.io/kube-apiserver:{V35}" in m for m in logged), logged
        k.sync_static_pods()  # inside the back-off: no new pull, still not running
        assert len([m for m in logged if "ErrImagePull" in m and "kube-apiserver:" in m]) == 1 and not k.pod.running
        images.store().add(images.build_archive(f"registry.k8s.io/kube-apiserver:{V35}"), "")
        k.images.backoff.clear()  # the back-off ran out
        k.sync_static_pods()
        try:
            assert k.pod.running and k.apiserver_version == V35
        finally:
            k.stop_api()
        host.write(images.TEST_STORE, "[]")  # containerd cannot be asked now: a restarted kubelet
        again = Kubelet(V35, log=logged.append)  # finds the container it started this boot
        again.sync_static_pods()
        try:
            assert again.pod.running and len([m for m in logged if "kube-apiserver:" in m]) == 1
        finally:
            again.stop_api()


@pytest.fixture
def registry(tmp_path_factory):
    """docker-registry on loopback with TLS (a test CA) and htpasswd; yields (URL, host:port, ca path)."""
    from tests import registry as R

    with R.serving_registry(tmp_path_factory.mktemp("registry"), USER, PASSWORD) as served:
        yield served


def render_registry_files(tmp_path: Path, monkeypatch, images_spec: dict, password: str) -> dict:
    """kubeforge's own hosts.toml files and CA for an inventory with ``images_spec`` as spec.images."""
    from ruamel.yaml import YAML

    from kubeforge.inventory import load_cluster
    from kubeforge.pki.registry import read_registry_access
    from kubeforge.render import render_cluster
    from kubeforge.render.registries import CERTS_DIR
    from tests.golden.cases import FAKE_CA_HASH, FakeSecrets

    doc = YAML(typ="safe").load((Path(__file__).resolve().parents[2] / "inventories" / "private-registry.yaml").read_text())
    doc["spec"]["images"] = images_spec
    with (tmp_path / "inv.yaml").open("w") as f:
        YAML().dump(doc, f)
    monkeypatch.setenv("KUBEFORGE_REGISTRY_PASSWORD", password)
    c = load_cluster(tmp_path / "inv.yaml")
    rendered = render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH, registry_access=read_registry_access(c))
    return {f.path: f for f in rendered["worker-1"] if f.path.startswith(CERTS_DIR)}


def private(reg_host: str, ca: Path) -> dict:
    return {"repository": f"{reg_host}/k8s", "ca": str(ca),
            "credentials": {reg_host: {"username": USER, "passwordEnv": "KUBEFORGE_REGISTRY_PASSWORD"}}}


def place(root: str, rendered: dict) -> None:
    with host.use_root(root):
        for path, f in rendered.items():
            host.write(path, f.content, f.mode)


def test_an_image_is_pulled_through_the_registry_kubeforges_hosts_toml_names_with_its_ca_and_credentials(
        tmp_path: Path, monkeypatch, registry) -> None:
    from tests import registry as R

    url, reg_host, ca = registry
    ref = f"{reg_host}/k8s/kube-apiserver:{V35}"
    R.push(url, f"k8s/kube-apiserver:{V35}", ref, auth=R.basic(USER, PASSWORD), ca=ca)
    root = machine(tmp_path, route=False)  # no way out: only the private registry can answer
    place(root, render_registry_files(tmp_path, monkeypatch, private(reg_host, ca), PASSWORD))
    with running_containerd(Path(real_containerd_machine(root))):
        with host.use_root(root):
            assert images.pull_checks([ref]) == []
            missing = images.pull_checks([f"{reg_host}/k8s/kube-scheduler:{V35}"])
        assert ctr_list(root) == [ref]
    assert "not found" in missing[0][1]


def test_a_wrong_password_or_another_ca_fails_the_pull_with_the_registrys_answer(tmp_path: Path, monkeypatch,
                                                                                registry) -> None:
    from tests import registry as R

    url, reg_host, ca = registry
    ref = f"{reg_host}/k8s/pause:3.10.1"
    R.push(url, "k8s/pause:3.10.1", ref, auth=R.basic(USER, PASSWORD), ca=ca)
    wrong_pw = machine(tmp_path / "a", route=True)
    place(wrong_pw, render_registry_files(tmp_path, monkeypatch, private(reg_host, ca), "not-the-password"))
    other_ca = machine(tmp_path / "b", route=True)
    place(other_ca, render_registry_files(tmp_path, monkeypatch, private(reg_host, R.make_ca(tmp_path / "ca2", "other")),
                                          PASSWORD))
    with host.use_root(wrong_pw):
        [(_, unauthorized)] = images.pull_checks([ref])
    with host.use_root(other_ca):
        [(_, untrusted)] = images.pull_checks([ref])
    assert "401 Unauthorized" in unauthorized and f"failed to pull image {ref}" in unauthorized
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted


def test_an_upstream_image_comes_through_its_configured_mirror_on_a_machine_with_no_route(tmp_path: Path, monkeypatch,
                                                                                        registry) -> None:
    """An air-gapped site's registry.k8s.io mirror (spec.images.mirrors): the mirror endpoint is tried
    first, with the mirror's credentials; upstream itself (no route) is never what answered."""
    from tests import registry as R

    url, reg_host, ca = registry
    ref = "registry.k8s.io/pause:3.10.1"
    R.push(url, "pause:3.10.1", ref, auth=R.basic(USER, PASSWORD), ca=ca)
    spec = {"ca": str(ca), "mirrors": {"registry.k8s.io": [url]},
            "credentials": {reg_host: {"username": USER, "passwordEnv": "KUBEFORGE_REGISTRY_PASSWORD"}}}
    root = machine(tmp_path, route=False)
    place(root, render_registry_files(tmp_path, monkeypatch, spec, PASSWORD))
    with host.use_root(root):
        assert images.pull_checks([ref]) == []
        [(_, neither)] = images.pull_checks(["registry.k8s.io/pause:3.10.2"])  # not on the mirror
        assert images.store().refs() == [ref]
    assert "network is unreachable" in neither  # the mirror said not found, then upstream had no route
