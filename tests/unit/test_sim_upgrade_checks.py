"""The simulator's `kubeadm upgrade` checks (cluster health) and its stacked etcd move to kubeadm's pin,
driven as commands on simulated machines inside this process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.model.versions import raw_data
from tests.need import skip_or_fail
from tests.sim.kubesim import etcdpod, host, upgrade_checks, workloads
from tests.unit.test_sim_cli import V33, V34, Lab, env, ready_lab, simlab  # noqa: F401  (fixtures)

CP_LABEL = "node-role.kubernetes.io/control-plane"


def kubeforge_tag(minor: str) -> str:
    """kubeadm's etcd image tag for ``minor`` as kubeforge itself reads its version data."""
    return raw_data()["kubernetes"]["minors"][minor]["etcdImageTag"]


def etcd_tag(root: str) -> str:
    with host.use_root(root):
        return upgrade_checks.manifest_etcd_tag() or ""


def set_etcd_tag(root: str, tag: str) -> None:
    p = Path(root, "etc/kubernetes/manifests/etcd.yaml")
    text = p.read_text()
    old = etcd_tag(root)
    p.write_text(text.replace(f"registry.k8s.io/etcd:{old}", f"registry.k8s.io/etcd:{tag}"))


def other_control_plane_down(simlab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """worker-1 made a control plane by its label (what kubeadm selects on), then its kubelet stopped."""
    assert simlab.kubectl("label", "node", "worker-1", f"{CP_LABEL}=")[0] == 0
    # heartbeats are stored every 2 s (state.HEARTBEAT_WRITE_EVERY); a grace just above keeps cp-1 Ready
    monkeypatch.setattr(workloads, "HEARTBEAT_GRACE", 4.0)
    simlab.kubelets[1].stop()
    time.sleep(4.5)


def test_upgrade_apply_and_plan_refuse_a_cluster_with_a_notready_control_plane(ready_lab: Lab, monkeypatch) -> None:
    other_control_plane_down(ready_lab, monkeypatch)
    for argv in (("upgrade", "plan"), ("upgrade", "apply", V34, "--yes")):
        rc, _, err = ready_lab.kubeadm(ready_lab.cp, *argv, version=V34)
        assert rc == 1, err
        assert ("[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n"
                "\t[ERROR ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: [worker-1]\n") in err
    assert ready_lab.state()["clusterVersion"] == V33
    assert "kube-apiserver:v1.33.6" in Path(ready_lab.cp, "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()


def test_ignore_preflight_errors_makes_the_health_check_a_warning(ready_lab: Lab, monkeypatch) -> None:
    other_control_plane_down(ready_lab, monkeypatch)
    rc, out, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes",
                                     "--ignore-preflight-errors=CreateJob,ControlPlaneNodesReady", version=V34)
    assert rc == 0, err
    assert "[WARNING ControlPlaneNodesReady]: there are NotReady control-planes in the cluster: [worker-1]" in err
    assert ready_lab.state()["clusterVersion"] == V34


def test_upgrade_apply_needs_this_machines_control_plane_manifests(ready_lab: Lab) -> None:
    os.remove(Path(ready_lab.cp, "etc/kubernetes/manifests/kube-scheduler.yaml"))
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 1
    assert ("[ERROR StaticPodManifest]: The control plane seems to be Static Pod-hosted, but some of the manifests "
            "don't seem to exist on disk.") in err
    assert "Manifest files not found: [/etc/kubernetes/manifests/kube-scheduler.yaml]" in err
    assert ready_lab.state()["clusterVersion"] == V33


def test_stacked_etcd_starts_on_and_moves_to_the_etcd_kubeadm_pins_for_the_minor(ready_lab: Lab) -> None:
    assert etcd_tag(ready_lab.cp) == kubeforge_tag("1.33")
    rc, out, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 0, err
    assert etcd_tag(ready_lab.cp) == kubeforge_tag("1.34")
    assert f"(etcd {kubeforge_tag('1.33')} -> {kubeforge_tag('1.34')})" in out


def test_etcd_upgrade_false_leaves_the_stacked_member_alone(ready_lab: Lab) -> None:
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", "--etcd-upgrade=false", version=V34)
    assert rc == 0, err
    assert etcd_tag(ready_lab.cp) == kubeforge_tag("1.33")


def test_an_etcd_pin_two_minors_ahead_of_the_member_fails_and_rolls_back(ready_lab: Lab) -> None:
    set_etcd_tag(ready_lab.cp, "3.4.23-0")  # data of a 3.4 member; kubeadm 1.34 pins a 3.6
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 1
    assert "etcd upgrades one minor at a time (the running cluster must be v3.5 or greater)" in err
    assert "Etcd was rolled back" in err and etcd_tag(ready_lab.cp) == "3.4.23-0"


def test_a_pin_older_than_the_running_etcd_is_refused(ready_lab: Lab) -> None:
    set_etcd_tag(ready_lab.cp, kubeforge_tag("1.37"))
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 1
    assert (f'the desired etcd version "{kubeforge_tag("1.34")}" is older than the currently installed '
            f'"{kubeforge_tag("1.37")}"') in err


def test_upgrade_node_moves_a_joined_control_planes_etcd_without_the_health_check(ready_lab: Lab, monkeypatch) -> None:
    # `upgrade node` runs no cluster health check (only apply and plan do); it does move the local etcd
    assert ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)[0] == 0
    other_control_plane_down(ready_lab, monkeypatch)
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "node", version=V34)
    assert rc == 0, err
    assert etcd_tag(ready_lab.cp) == kubeforge_tag("1.34")


def test_the_pin_for_an_unknown_minor_is_the_nearest_one_like_kubeadm(capsys) -> None:
    newest = max(raw_data()["kubernetes"]["minors"], key=lambda m: int(m.split(".")[1]))
    beyond = f"v1.{int(newest.split('.')[1]) + 1}.0"
    assert upgrade_checks.pinned_etcd_tag(beyond) == kubeforge_tag(newest)
    assert "falling back to the nearest etcd version" in capsys.readouterr().err


# --- the etcd "container" restarts on a new image ------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_new_etcd_image_restarts_the_real_member_and_the_same_one_does_not(tmp_path) -> None:
    if shutil.which("etcd") is None:
        skip_or_fail("etcd-server is needed (apt: etcd-server)")
    root = str(tmp_path)
    image = tmp_path / etcdpod.IMAGE_DIR.lstrip("/")
    image.mkdir(parents=True)
    shutil.copy(shutil.which("etcd"), image / "etcd")
    client, peer = _free_port(), _free_port()
    command = ["etcd", "--name=m1", f"--data-dir={tmp_path}/data", f"--listen-client-urls=http://127.0.0.1:{client}",
               f"--advertise-client-urls=http://127.0.0.1:{client}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
               f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}", f"--initial-cluster=m1=http://127.0.0.1:{peer}"]

    def pod(tag: str) -> dict:
        return {"spec": {"containers": [{"name": "etcd", "image": f"registry.k8s.io/etcd:{tag}", "command": command}]}}

    def answering() -> bool:
        deadline = time.time() + 20
        while time.time() < deadline:
            if subprocess.run(["curl", "-sf", f"http://127.0.0.1:{client}/health"], capture_output=True).returncode == 0:
                return True
            time.sleep(0.2)
        return False

    with host.use_root(root):
        runner = etcdpod.EtcdPod(log=lambda m: None)
        try:
            runner.sync(pod(kubeforge_tag("1.33")))
            first = etcdpod.running_pid()
            assert first is not None and answering()
            runner.sync(pod(kubeforge_tag("1.33")))
            assert etcdpod.running_pid() == first  # same container spec: left running
            runner.sync(pod(kubeforge_tag("1.34")))
            second = etcdpod.running_pid()
            assert second is not None and second != first and answering()
            assert etcdpod.running_image() == kubeforge_tag("1.34")
        finally:
            etcdpod.kill_running()
