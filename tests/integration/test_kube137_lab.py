"""Today's minors on the lab: `kubeforge up` at Kubernetes 1.36 (stacked etcd), then `upgrade --to 1.37.1`
to Ready nodes, with the path's patches read from the lab mirror's per-minor Packages indexes; and the
1.37 simulator's kubeadm on a lab machine refusing a kubeadm.k8s.io/v1beta3 config like kubeadm 1.37."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from tests.integration.test_upgrade_lab import CNI, Env

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

LAYOUT = [("cp-1", ("control-plane", "etcd")), ("worker-1", ("worker",))]
FROM, TO = "1.36.5", "1.37.1"  # what the lab mirror offers (tests/sim/build_debs.py DEFAULT_VERSIONS)
V1BETA3 = """apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.37.1
"""


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory(LAYOUT, kubernetes_version=FROM)
    d = tmp_path_factory.mktemp("kube137-lab")
    doc = YAML(typ="safe").load(lab.write_inventory(d / "lab.yaml").read_text())
    doc["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(CNI)
    e = Env(lab, d, d / "inventory.yaml", doc)
    e.write_inventory()
    return e


def kubelets(env: Env) -> dict[str, tuple[str, bool]]:
    return {n: (v["kubeletVersion"], bool(v.get("ready"))) for n, v in env.sim("state")["nodes"].items()}


def test_validate_and_plan_up_report_the_etcd_kubeadm_1_36_runs_for_stacked_etcd(env):
    res = env.kf("validate")
    assert res.returncode == 0, res.stderr
    assert "etcd stacked, 3.6.9 from kubeadm 1.36" in res.stdout
    res = env.kf("plan", "up")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "kubeadm 1.36 runs etcd 3.6.9 as a static pod" in res.stdout


def test_up_at_1_36_brings_every_node_ready_at_1_36(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert kubelets(env) == {"cp-1": (f"v{FROM}", True), "worker-1": (f"v{FROM}", True)}


def test_plan_upgrade_to_1_37_names_the_mirror_that_offers_it(env):
    res = env.kf("plan", "upgrade", "--to", TO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Switch the package source to Kubernetes 1.37; {TO} offered by the mirror http://" in res.stdout


def test_upgrade_to_1_37_ends_with_every_node_ready_at_1_37(env):
    res = env.kf("upgrade", "--to", TO, "--yes", timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert kubelets(env) == {"cp-1": (f"v{TO}", True), "worker-1": (f"v{TO}", True)}
    cfg = env.lab.exec("cp-1", ["cat", "/etc/kubeforge/kubeadm-upgrade.yaml"], check=True).stdout
    assert "kubeadm.k8s.io/v1beta4" in cfg and "v1beta3" not in cfg
    assert env.sim("violations") == []


def test_the_1_37_kubeadm_on_the_machine_refuses_a_v1beta3_config(env):
    env.lab.exec("cp-1", ["bash", "-c", "cat > /tmp/old.yaml"], input=V1BETA3, check=True)
    res = env.lab.exec("cp-1", ["kubeadm", "config", "validate", "--config", "/tmp/old.yaml"], check=False)
    assert res.returncode != 0
    assert 'uses an old API spec: "kubeadm.k8s.io/v1beta3"' in res.stdout + res.stderr
    assert env.lab.exec("cp-1", ["kubeadm", "version", "-o", "short"], check=True).stdout.strip() == f"v{TO}"
