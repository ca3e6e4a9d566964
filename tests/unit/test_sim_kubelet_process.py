"""The kubelet as a real long-running process: crash loop, serving the API, restarts seen by the cluster."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.sim import testing as T
from tests.sim.kubesim import staticpod

V = "v1.34.2"
INIT = """apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
nodeRegistration:
  name: cp-1
  taints: []
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: 1.34.2
"""
WORKLOAD = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      tolerations: [{operator: Exists}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
"""


def until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    for k, v in {"KUBESIM_API_PORT": port, "KUBESIM_WAIT_SECONDS": "10", "KUBESIM_HEARTBEAT_SECONDS": "0.1"}.items():
        monkeypatch.setenv(k, v)
    root = T.make_machine(str(tmp_path / "cp-1"), "cp-1", V)
    svc = T.KubeletService(root, V, dict(os.environ))
    yield root, svc
    svc.stop()


def kubectl(root: str, *argv: str):
    return T.run("kubectl", root, [*argv, "--kubeconfig", f"{root}/etc/kubernetes/admin.conf"], V)


def violations(root: str) -> list[str]:
    return [v["message"] for v in json.loads(kubectl(root, "get", "--raw", "/kubesim/violations")[1])]


def test_kubelet_process_crash_loops_then_serves_the_control_plane_after_init(service, tmp_path: Path) -> None:
    root, svc = service
    until(lambda: svc.exits.count(1) >= 2, what="the kubelet to crash-loop without its config")
    assert "failed to load kubelet config file" in svc.last_stderr
    (tmp_path / "init.yaml").write_text(INIT)
    rc, out, err = T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V)
    assert rc == 0, err
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    assert kubectl(root, "apply", "-f", str(tmp_path / "w.yaml"))[0] == 0
    until(lambda: "Ready" in kubectl(root, "get", "nodes")[1].split(), what="cp-1 Ready")
    assert json.loads(kubectl(root, "version", "-o", "json")[1])["serverVersion"]["gitVersion"] == V


def test_restarting_the_kubelet_of_an_undrained_node_is_recorded_and_a_drained_one_is_not(service, tmp_path) -> None:
    root, svc = service
    (tmp_path / "init.yaml").write_text(INIT)
    assert T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V)[0] == 0
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    assert kubectl(root, "apply", "-f", str(tmp_path / "w.yaml"))[0] == 0
    until(lambda: "Running" in kubectl(root, "get", "pods")[1], what="the web pod to run on cp-1")
    with T.host.use_root(root):
        apiserver = staticpod.running_pid()
    svc.restart()
    until(lambda: violations(root), what="the restart to be recorded")
    assert violations(root) == ["kubelet restarted on undrained node cp-1"]
    with T.host.use_root(root):
        assert staticpod.running_pid() == apiserver is not None  # the static pod outlived the kubelet restart
    rc, _, err = kubectl(root, "drain", "cp-1", "--ignore-daemonsets", "--timeout=5s")
    assert rc == 0, err
    svc.restart()
    until(lambda: sum(1 for e in json.loads(kubectl(root, "sim", "state")[1])["history"]
                      if e["event"] == "kubelet-start" and e.get("restart")) >= 2, what="the second restart")
    assert violations(root) == ["kubelet restarted on undrained node cp-1"]


def test_reset_stops_the_api_server_static_pod(service, tmp_path: Path) -> None:
    root, svc = service
    (tmp_path / "init.yaml").write_text(INIT)
    assert T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V)[0] == 0
    with T.host.use_root(root):
        assert staticpod.running_pid() is not None
    rc, _, err = T.run("kubeadm", root, ["reset", "-f"], V)
    assert rc == 0, err
    with T.host.use_root(root):
        until(lambda: staticpod.running_pid() is None, what="the API server process to end")
    assert not Path(root, "etc/kubernetes/admin.conf").exists()


def test_the_api_server_static_pod_process_is_named_kube_apiserver_as_the_real_container_is():
    """`ss -p` and kubeforge's preflight read /proc/PID/comm: the port is held by kube-apiserver."""
    import subprocess
    import sys

    code = ("from tests.sim.kubesim import staticpod; staticpod._name_process('kube-apiserver'); "
            "print(open('/proc/self/comm').read().strip())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "kube-apiserver"
