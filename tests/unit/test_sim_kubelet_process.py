"""The kubelet as a real long-running process: crash loop, serving the API, restarts seen by the cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.plan.up.wait_nodes_ready import PROBE
from kubeforge.transport.base import Command
from kubeforge.transport.script import script_for
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
    cri = T.RuntimeSocket(root)
    svc = T.KubeletService(root, V, dict(os.environ))
    yield root, svc
    svc.stop()
    cri.close()


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
def ready_cp(root: str, tmp_path: Path) -> None:
    (tmp_path / "init.yaml").write_text(INIT)
    assert T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V)[0] == 0
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    assert kubectl(root, "apply", "-f", str(tmp_path / "w.yaml"))[0] == 0
    until(lambda: "Ready" in kubectl(root, "get", "nodes")[1].split(), what="cp-1 Ready")


def ready_message(root: str) -> str:
    node = json.loads(kubectl(root, "get", "node", "cp-1", "-o", "json")[1])
    return next(c["message"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_the_kubelet_refuses_to_start_with_swap_on_unless_its_config_allows_it(service) -> None:
    root, svc = service
    Path(root, "var/lib/kubelet").mkdir(parents=True)
    Path(root, "var/lib/kubelet/config.yaml").write_text("kind: KubeletConfiguration\ncgroupDriver: systemd\n")
    Path(root, "proc/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n")
    until(lambda: svc.exits.count(1) >= 2 and "swap" in svc.last_stderr, what="the kubelet to refuse swap")
    assert "running with swap on is not supported, please disable swap" in svc.last_stderr
    assert "/swapfile file 1024 0 -2" in svc.last_stderr
    Path(root, "var/lib/kubelet/config.yaml").write_text("kind: KubeletConfiguration\ncgroupDriver: systemd\nfailSwapOn: false\n")
    exits = len(svc.exits)
    time.sleep(1.0)  # a restart or two at 0.2 s: none of them may exit again
    assert len(svc.exits) <= exits + 1 and svc.proc.poll() is None


def test_the_kubelet_refuses_to_start_without_a_live_cri_socket(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KUBESIM_HEARTBEAT_SECONDS", "0.1")
    root = T.make_machine(str(tmp_path / "m"), "m", V)
    Path(root, "var/lib/kubelet").mkdir(parents=True)
    Path(root, "var/lib/kubelet/config.yaml").write_text("kind: KubeletConfiguration\ncgroupDriver: systemd\n")
    svc = T.KubeletService(root, V, dict(os.environ))  # containerd stopped: no socket
    try:
        until(lambda: svc.exits.count(1) >= 2, what="the kubelet to crash-loop without containerd")
        assert 'failed to run Kubelet: validate service connection: validate CRI v1 runtime API for endpoint ' \
               '"unix:///run/containerd/containerd.sock"' in svc.last_stderr
        assert "connect: no such file or directory" in svc.last_stderr
    finally:
        svc.stop()


def test_a_dead_containerd_or_a_cgroup_driver_mismatch_turns_the_node_not_ready_saying_why(service, tmp_path) -> None:
    root, svc = service
    ready_cp(root, tmp_path)
    config = Path(root, "etc/containerd/config.toml")
    config.write_text(config.read_text().replace("SystemdCgroup = true", "SystemdCgroup = false"))
    until(lambda: "NotReady" in kubectl(root, "get", "nodes")[1].split(), what="cp-1 NotReady on the mismatch")
    assert 'cgroup driver "systemd" is not the container runtime\'s "cgroupfs"' in ready_message(root)
    # kubeforge's WaitNodesReady gate says why, from the node's Ready condition
    probe = PROBE.format(nodes="cp-1", kubectl=f"kubectl --kubeconfig {root}/etc/kubernetes/admin.conf")
    env = T.kubectl_on_path(str(tmp_path / "bin"), root, V, os.environ["KUBESIM_API_PORT"])
    # as kubeforge's transport runs it (set -euo pipefail)
    res = subprocess.run(["bash"], input=script_for(Command(script=probe)), env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "cp-1 not Ready: failed to create pod sandbox: OCI runtime create failed: the " \
        'kubelet\'s cgroup driver "systemd" is not the container runtime\'s "cgroupfs"' in res.stderr, res.stderr
    config.write_text(config.read_text().replace("SystemdCgroup = false", "SystemdCgroup = true"))
    until(lambda: "Ready" in kubectl(root, "get", "nodes")[1].split(), what="cp-1 Ready again")
    os.unlink(Path(root, "run/containerd/containerd.sock"))  # containerd stopped under a running kubelet
    until(lambda: "NotReady" in kubectl(root, "get", "nodes")[1].split(), what="cp-1 NotReady without containerd")
    assert ready_message(root).startswith("container runtime is down: validate CRI v1 runtime API")


def test_the_runtimes_cgroup_driver_is_its_config_as_the_running_containerd_read_it(tmp_path: Path, monkeypatch) -> None:
    """containerd reads config.toml only when it starts: a file changed under a running containerd
    changes nothing until containerd restarts, and putting the old content back after a restart on
    another driver changes nothing either (kubeforge must restart it: its stamp cannot tell)."""
    from tests.sim.kubesim import host, runtime

    root = T.make_machine(str(tmp_path / "m"), "m", V)
    T.RuntimeSocket(root).close()  # containerd's config as kubeforge writes it
    config = Path(root, "etc/containerd/config.toml")
    systemd = config.read_text()
    assert "SystemdCgroup = true" in systemd
    running = {"pid": 100, "started": config.stat().st_mtime + 1}
    monkeypatch.setattr(runtime, "containerd_process", lambda: (running["pid"], running["started"]))
    monkeypatch.setattr(runtime, "_LOADED", {})

    def restart_containerd() -> None:
        running["pid"] += 1
        running["started"] = config.stat().st_mtime + 1

    def write(text: str) -> None:
        config.write_text(text)
        os.utime(config, (running["started"] + 5, running["started"] + 5))  # after containerd's start

    with host.use_root(root):
        assert runtime.runtime_driver() == "systemd"
        write(systemd.replace("SystemdCgroup = true", "SystemdCgroup = false"))
        assert runtime.runtime_driver() == "systemd"  # not loaded yet
        restart_containerd()
        assert runtime.runtime_driver() == "cgroupfs"
        write(systemd)
        assert runtime.runtime_driver() == "cgroupfs"  # the running containerd still has the other one
        restart_containerd()
        assert runtime.runtime_driver() == "systemd"
