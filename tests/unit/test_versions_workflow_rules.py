"""Version rules where they meet the workflows: stacked etcd is what kubeadm runs (and is never
fetched from the internet), external etcd must satisfy the target minor's kubeadm, and an example
inventory at a supported minor validates and renders v1beta4 only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.inventory import load_cluster
from kubeforge.inventory.summary import summary
from kubeforge.model import EtcdTopology, PackageSource, PackageSourceKind
from kubeforge.model.upgrade_path import etcd_for_kubernetes
from kubeforge.model.versions import Version, parse_kube
from kubeforge.plan.phase import Plan
from kubeforge.workflows.up import with_stacked_etcd_tools
from tests.factories import make_cluster

REPO = Path(__file__).resolve().parents[2]


def test_validate_reports_the_etcd_kubeadm_runs_for_stacked_not_the_inventorys_version():
    c = make_cluster(version="1.36.5", topology=EtcdTopology.STACKED, etcd_version="3.5.21")
    line = summary(c)
    assert "etcd stacked, 3.6.9 from kubeadm 1.36" in line and "3.5.21" not in line


def test_plan_up_with_stacked_etcd_from_upstream_fetches_no_etcd_archive_and_says_how_to_get_the_tools():
    c = make_cluster(version="1.37.1", topology=EtcdTopology.STACKED)
    c = dataclasses.replace(c, packages=PackageSource(kind=PackageSourceKind.UPSTREAM))
    # pool=None: any attempt to fetch or to ask a host would fail here
    plan = with_stacked_etcd_tools(Plan("up", ()), c, pool=None)
    (phase,) = plan.phases
    assert phase.name == "InstallEtcdTools" and phase.is_noop
    assert "fetches no etcd archive from the internet" in phase.reason and "3.7.0" in phase.reason
    assert "releaseURL" in phase.reason


def test_a_kubernetes_minor_needing_a_newer_external_etcd_names_the_etcd_upgrade_to_run_first():
    with pytest.raises(SafetyRefusal) as err:
        etcd_for_kubernetes(parse_kube("1.36.5"), {"etcd-1": Version.parse("3.5.21"), "etcd-2": Version.parse("3.5.30")})
    assert "Kubernetes 1.36.5 needs external etcd 3.5.24 or later, and members run etcd-1 3.5.21" in str(err.value)
    assert "MinExternalEtcdVersion" in str(err.value)
    assert "kubeforge etcd upgrade -i <inventory> --to 3.5.33" in err.value.hint
    assert err.value.exit_code == 7
    etcd_for_kubernetes(parse_kube("1.36.5"), {"etcd-1": Version.parse("3.5.24")})  # at the minimum: fine


def test_an_external_etcd_below_kubeadms_minimum_is_an_inventory_error(tmp_path):
    text = (REPO / "inventories" / "ha-external-etcd.yaml").read_text()
    inv = tmp_path / "inv.yaml"
    inv.write_text(text.replace("kubernetesVersion: 1.35.1", "kubernetesVersion: 1.36.5"))
    from kubeforge.errors import InventoryError

    with pytest.raises(InventoryError) as err:
        load_cluster(inv)
    assert "below 3.5.24, the oldest external etcd kubeadm 1.36 accepts" in str(err.value)
    assert "kubeforge etcd upgrade -i <inventory> --to 3.5.33" in str(err.value)


def test_an_inventory_at_1_37_validates_and_renders_v1beta4_only(tmp_path):
    from kubeforge.render import render_cluster
    from tests.golden.cases import FAKE_CA_HASH, FakeSecrets

    inv = tmp_path / "inv.yaml"
    inv.write_text((REPO / "inventories" / "ha-stacked-haproxy.yaml").read_text().replace("1.36.5", "1.37.1"))
    c = load_cluster(inv)
    apis = {line.split(":", 1)[1].strip() for fs in render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).values()
            for f in fs for line in f.content.decode(errors="replace").splitlines()
            if line.startswith("apiVersion: kubeadm.k8s.io/")}
    assert apis == {"kubeadm.k8s.io/v1beta4"}


def test_version_json_prints_every_fact_with_sources_supported_etcd_minors_and_oses():
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "kubeforge", "version", "-o", "json"], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert res.returncode == 0, res.stderr
    facts = json.loads(res.stdout)
    assert facts["kubernetes"]["supportedMinors"] == ["1.35", "1.36", "1.37"]
    assert facts["kubernetes"]["minors"]["1.37"]["kubeadmConfigAPIs"] == ["v1beta4"]
    assert facts["kubernetes"]["minors"]["1.36"]["sources"]["kubeadmEtcd"].startswith("kubernetes/kubernetes#")
    assert facts["etcd"]["supportedMinors"] == ["3.5", "3.6", "3.7"]
    assert facts["etcd"]["minors"]["3.5"]["exitFloor"] == "3.5.32"
    assert facts["operatingSystems"]["supported"]["ubuntu"] == ["22.04", "24.04"]
    assert "removedAPIs" in facts
    bad = subprocess.run([sys.executable, "-m", "kubeforge", "version", "-o", "xml"], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert bad.returncode == 2 and "'xml' is not one of" in bad.stderr and "Traceback" not in bad.stderr
