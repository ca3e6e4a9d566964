"""The simulated kubectl's --server, as real kubectl's: it replaces the kubeconfig's server, and a
control plane's kubectl then does not fall back to its own API server (an endpoint gate relies on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.kubesim import host, kubectl

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://10.77.4.100:6443
"""


@pytest.fixture
def control_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBESIM_API_PORT", raising=False)
    manifests = tmp_path / "etc/kubernetes/manifests"
    manifests.mkdir(parents=True)
    (manifests / "kube-apiserver.yaml").write_text("kind: Pod\n")
    (tmp_path / "etc/kubernetes/admin.conf").write_text(KUBECONFIG)
    return tmp_path


def bases(root: Path, argv: list[str]) -> list[str]:
    with host.use_root(str(root)):
        return kubectl.bases(kubectl.parser().parse_args(kubectl._globals_last(argv)))


def test_a_control_planes_kubectl_falls_back_to_its_own_api_server_without_server(control_plane: Path) -> None:
    conf = str(control_plane / "etc/kubernetes/admin.conf")
    assert bases(control_plane, ["--kubeconfig", conf, "get", "nodes"]) == [
        "https://10.77.4.100:6443", "https://127.0.0.1:6443"]


@pytest.mark.parametrize("flag", ["--server", "-s"])
def test_server_replaces_the_kubeconfigs_server_with_no_local_fallback(control_plane: Path, flag: str) -> None:
    conf = str(control_plane / "etc/kubernetes/admin.conf")
    argv = ["--kubeconfig", conf, flag, "https://10.77.4.200:6443", "get", "--raw", "/readyz"]
    assert bases(control_plane, argv) == ["https://10.77.4.200:6443"]
