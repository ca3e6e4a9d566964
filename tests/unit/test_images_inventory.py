"""spec.images: validation with positions, the model it builds, and what it renders (hosts.toml,
containerd's config_path, kubeadm's imageRepository, pause and kube-vip following the repository)."""

from __future__ import annotations

import base64
import os
import tomllib
from pathlib import Path

import pytest

from kubeforge.errors import InputError, InventoryError
from kubeforge.inventory import loads
from kubeforge.model.secret import redact
from kubeforge.pki.registry import read_registry_access
from kubeforge.render import render_cluster
from tests.golden.cases import FAKE_CA_HASH, FakeSecrets
from tests.unit.test_inventory_rules import HEAD, SMALL


def check(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as ``file:line:col: where: message``."""
    try:
        result = loads(text, file="inv.yaml", source=Path("/nonexistent/inv.yaml"))
    except InventoryError as exc:
        return [str(p) for p in exc.problems], [str(p) for p in exc.warnings]
    return [], [str(p) for p in result.warnings]

CA = (Path(__file__).resolve().parents[2] / "inventories" / "private-registry-ca.pem").read_text()


def images(block: str) -> str:
    return HEAD + "  images:\n" + "".join(f"    {line}\n" for line in block.strip("\n").splitlines()) + SMALL


def test_a_repository_with_a_scheme_is_refused_at_its_position():
    errs, _ = check(images("repository: https://reg.example/k8s"))
    assert errs == ["inv.yaml:8:17: images.repository: 'https://reg.example/k8s' has a scheme: write "
                    "host[:port][/path] (kubeadm's imageRepository)"]


def test_uppercase_repository_paths_and_bad_ports_are_refused():
    assert check(images("repository: reg.example/K8s"))[0] == [
        "inv.yaml:8:17: images.repository: 'reg.example/K8s': 'K8s' is not a repository path component "
        "(lowercase letters, digits, '.', '_', '-')"]
    assert "port 99999 is out of range" in check(images("repository: reg.example:99999/k8s"))[0][0]


def test_mirror_endpoints_must_be_http_urls_and_keys_registry_hosts():
    errs, _ = check(images("mirrors:\n  docker.io:\n    - mirror.example\n  'Bad Host':\n    - https://m.example"))
    assert errs == [
        "inv.yaml:10:11: images.mirrors[\"docker.io\"][0]: 'mirror.example' is not an http(s) URL of a registry endpoint",
        "inv.yaml:11:7: images.mirrors[\"Bad Host\"]: 'Bad Host' is not a registry host (host or host:port, "
        "lowercase, no scheme or path)",
    ]


def test_credentials_need_exactly_one_password_source_and_never_the_password():
    errs, _ = check(images("credentials:\n  registry.k8s.io:\n    username: u\n    password: hunter22"))
    assert errs == ["inv.yaml:11:9: images.credentials[\"registry.k8s.io\"].password: unknown key 'password'"]
    errs, _ = check(images("credentials:\n  registry.k8s.io:\n    username: u"))
    assert errs == ["inv.yaml:10:9: images.credentials[\"registry.k8s.io\"]: needs exactly one of passwordFile or "
                    "passwordEnv (the password itself never goes in the inventory)"]


def test_credentials_for_a_registry_nothing_pulls_from_warn():
    errs, warns = check(images("credentials:\n  other.example:\n    username: u\n    passwordEnv: X"))
    assert errs == []
    assert any("'other.example' is neither the repository's registry nor a mirror" in w for w in warns)


def _cluster(tmp_path: Path, block: str):
    inv = tmp_path / "inv.yaml"
    inv.write_text(images(block))
    return loads(inv.read_text(), file=str(inv), source=inv).cluster


def test_the_password_file_is_read_into_a_0600_hosts_toml_and_masked(tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-registry-pw\n")
    pw.chmod(0o600)
    (tmp_path / "ca.pem").write_text(CA)
    c = _cluster(tmp_path, "repository: reg.example:5000/k8s\nmirrors:\n  docker.io:\n    - https://m.example\n"
                 "credentials:\n  reg.example:5000:\n    username: puller\n    passwordFile: pw\nca: ca.pem")
    files = render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH, registry_access=read_registry_access(c))
    cp = {f.path: f for f in files["cp-1"]}
    hosts = cp["/etc/containerd/certs.d/reg.example:5000/hosts.toml"]
    assert hosts.secret and hosts.mode == 0o600
    doc = tomllib.loads(hosts.content.decode())
    assert doc["server"] == "https://reg.example:5000"
    assert doc["ca"] == "/etc/containerd/certs.d/reg.example:5000/ca.crt"
    assert base64.b64decode(doc["header"]["Authorization"].split()[1]) == b"puller:s3cret-registry-pw"
    assert cp["/etc/containerd/certs.d/reg.example:5000/ca.crt"].content.decode() == CA
    mirror = cp["/etc/containerd/certs.d/docker.io/hosts.toml"]
    assert not mirror.secret
    assert tomllib.loads(mirror.content.decode())["host"]["https://m.example"]["capabilities"] == ["pull", "resolve"]
    assert "s3cret-registry-pw" not in redact(f"pulled with s3cret-registry-pw and {doc['header']['Authorization']}")
    config = tomllib.loads(cp["/etc/containerd/config.toml"].content.decode())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cri["sandbox_image"] == "reg.example:5000/k8s/pause:3.10.1"
    assert b"imageRepository: reg.example:5000/k8s\n" in cp["/etc/kubeforge/kubeadm-init.yaml"].content


def test_a_password_file_others_can_read_is_refused_before_rendering(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("x-password")
    pw.chmod(0o644)
    c = _cluster(tmp_path, "credentials:\n  registry.k8s.io:\n    username: u\n    passwordFile: pw")
    with pytest.raises(InputError, match=r"passwordFile .*/pw is readable or writable by others \(mode 644\)") as exc:
        read_registry_access(c)
    assert exc.value.exit_code == 3


def test_an_unset_password_variable_is_input_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KF_TEST_UNSET_PW", raising=False)
    c = _cluster(tmp_path, "credentials:\n  registry.k8s.io:\n    username: u\n    passwordEnv: KF_TEST_UNSET_PW")
    with pytest.raises(InputError, match="the environment variable KF_TEST_UNSET_PW is not set"):
        read_registry_access(c)


def test_a_ca_that_is_not_pem_is_refused(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    c = _cluster(tmp_path, "ca: ca.pem")
    with pytest.raises(InputError, match="images.ca: .*ca.pem is not a PEM certificate"):
        read_registry_access(c)


def test_without_images_nothing_registry_specific_is_rendered(tmp_path):
    c = _cluster(tmp_path, "repository: registry.k8s.io")
    files = render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    assert not [f.path for f in files["cp-1"] if "certs.d" in f.path]


def test_the_json_schema_documents_the_images_section():
    from kubeforge.inventory.schema import json_schema
    props = json_schema()["$defs"]["ImagesDoc"]["properties"]
    assert set(props) == {"repository", "mirrors", "credentials", "ca"}
    assert props["repository"]["default"] == "registry.k8s.io"


def test_render_without_the_registry_password_exits_3_before_creating_any_state(tmp_path):
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    for name in ("private-registry.yaml", "private-registry-ca.pem"):
        shutil.copy(repo / "inventories" / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "KUBEFORGE_REGISTRY_PASSWORD"}
    res = subprocess.run([sys.executable, "-m", "kubeforge", "render", "-i", str(tmp_path / "private-registry.yaml")],
                         capture_output=True, text=True, env=env, cwd=repo, timeout=60)
    assert res.returncode == 3, res.stderr
    assert "the environment variable KUBEFORGE_REGISTRY_PASSWORD is not set" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / ".kubeforge").exists()
