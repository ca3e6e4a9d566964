"""The removed-API scan on real machines: `kubeforge up` at 1.34.2 (one control plane with stacked
etcd, one worker; real SSH, apt, systemd; kubeadm/kubelet/kubectl from the simulator, whose API
server keeps how each object was written and serves API versions per its minor).

An object applied in storagemigration.k8s.io/v1alpha1 — served by 1.34, not by 1.35 — blocks
`upgrade --to 1.35.1` with exit 7, naming it, before anything is touched; `--allow-removed-apis`
shows the warning in the plan and the upgrade goes on to Ready nodes, after which 1.35's API server
refuses that version as the real one does. The tests run in order on one lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.lab.inventory import SIM_CNI_MANIFEST

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

KUBE, NEXT = "1.34.2", "1.35.1"
NODES = ("cp-1", "w-1")
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
OLD_SVM = """apiVersion: storagemigration.k8s.io/v1alpha1
kind: StorageVersionMigration
metadata:
  name: migrate-flowschemas
spec:
  resource: {group: flowcontrol.apiserver.k8s.io, version: v1, resource: flowschemas}
"""
FINDING = "StorageVersionMigration migrate-flowschemas in storagemigration.k8s.io/v1alpha1"


class Env:
    def __init__(self, lab, inventory: Path) -> None:
        self.lab, self.inventory = lab, inventory

    def kf(self, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.inventory.parent, check=False)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return self.lab.exec("cp-1", [*KUBECTL, *args], input=stdin)

    def sim(self, what: str):
        return json.loads(self.kubectl("sim", what).stdout)

    def versions(self) -> dict[str, str]:
        return {n: self.lab.exec(n, ["dpkg-query", "-W", "-f=${Version}", "kubeadm", "kubelet"], check=True).stdout
                for n in NODES}


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory([("cp-1", ("control-plane", "etcd")), ("w-1", ("worker",))], kubernetes_version=KUBE)
    d = tmp_path_factory.mktemp("removed-apis")
    doc = YAML(typ="safe").load(lab.write_inventory(d / "lab.yaml").read_text())
    doc["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(SIM_CNI_MANIFEST)
    inv = d / "inventory.yaml"
    with inv.open("w") as f:
        YAML().dump(doc, f)
    e = Env(lab, inv)
    res = e.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    applied = e.kubectl("apply", "-f", "-", stdin=OLD_SVM)
    assert applied.returncode == 0, applied.stderr  # 1.34 serves v1alpha1
    return e


def test_an_object_stored_in_a_version_the_next_minor_removes_blocks_the_upgrade_naming_it(env):
    before, history = env.versions(), len(env.sim("state")["history"])
    res = env.kf("upgrade", "--to", NEXT, "--yes")
    assert res.returncode == 7, res.stdout[-3000:] + res.stderr[-3000:]
    err = " ".join(res.stderr.split())
    assert "1.34 -> 1.35 stops serving API versions these still use" in err
    assert FINDING in err and "managedFields: manager kubectl-client-side-apply, Update" in err
    assert "--allow-removed-apis" in err and "Nothing was changed" in err
    assert env.versions() == before and len(env.sim("state")["history"]) == history


def test_plan_upgrade_with_the_flag_starts_the_hop_with_a_warning_naming_the_object(env):
    res = env.kf("plan", "upgrade", "--to", NEXT, "--allow-removed-apis")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = " ".join(res.stdout.split())
    assert "Warning: --allow-removed-apis: 1.35 stops serving API versions these objects still use" in out
    assert FINDING in out
    assert out.index("Warning: --allow-removed-apis") < out.index("kubeadm upgrade apply v1.35.1")


def test_with_the_flag_the_upgrade_goes_on_and_the_new_minor_refuses_the_removed_version(env):
    res = env.kf("upgrade", "--to", NEXT, "--yes", "--allow-removed-apis")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    nodes = env.sim("state")["nodes"]
    assert {n: (v["kubeletVersion"], v["ready"]) for n, v in nodes.items()} == {n: (f"v{NEXT}", True) for n in NODES}
    again = env.kubectl("apply", "-f", "-", stdin=OLD_SVM)
    assert again.returncode == 1
    assert 'no matches for kind "StorageVersionMigration" in version "storagemigration.k8s.io/v1alpha1"' in again.stderr
    # the object is still there, served in the version 1.35 has, its writer's version kept
    (item,) = json.loads(env.kubectl("get", "storageversionmigrations.storagemigration.k8s.io", "-A", "-o", "json",
                                     ).stdout)["items"]
    assert item["apiVersion"] == "storagemigration.k8s.io/v1beta1"
    assert item["metadata"]["managedFields"][0]["apiVersion"] == "storagemigration.k8s.io/v1alpha1"
    assert env.sim("violations") == []
