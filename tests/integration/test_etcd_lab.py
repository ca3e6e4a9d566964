"""The etcd lifecycle on real machines: Debian's etcd 3.4 from the lab mirror, installed, backed up,
restored and resized by kubeforge over real SSH, checked with the real etcdctl on the members."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.lab

ETCD_PKI = "/etc/etcd/pki"
TLS = [f"--cacert={ETCD_PKI}/ca.crt", f"--cert={ETCD_PKI}/healthcheck-client.crt",
       f"--key={ETCD_PKI}/healthcheck-client.key"]


def inventory_with(lab, path: Path, etcd_hosts: list[str]) -> Path:
    """The lab's inventory with only ``etcd_hosts`` (and the control plane) in it."""
    yaml = YAML()
    doc = yaml.load(lab.inventory_path.read_text())
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] in etcd_hosts or "etcd" not in h["roles"]]
    doc["spec"]["etcd"]["backup"] = {"keep": 3}
    with path.open("w") as f:
        yaml.dump(doc, f)
    return path


def kf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=timeout)


def etcdctl(lab, on: str, *args: str, endpoints: str | None = None, tls: bool = True) -> subprocess.CompletedProcess:
    ep = endpoints or f"https://{lab.address(on)}:2379"
    argv = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={ep}", "--dial-timeout=3s", "--command-timeout=10s"]
    return lab.exec(on, [*argv, *(TLS if tls else []), *args])


@pytest.fixture(scope="module")
def elab(lab_factory):
    # etcd-1 doubles as the control plane the inventory needs: five machines, not six, on a busy runner
    return lab_factory([("etcd-1", ("control-plane", "etcd"))] + [(f"etcd-{i}", ("etcd",)) for i in range(2, 6)])


@pytest.fixture(scope="module")
def three(elab, tmp_path_factory) -> Path:
    """A 3-member cluster installed by kubeforge (once for the module)."""
    inv = inventory_with(elab, tmp_path_factory.mktemp("inv") / "etcd3.yaml", ["etcd-1", "etcd-2", "etcd-3"])
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    return inv


def members_of(lab, on: str) -> list[dict]:
    res = etcdctl(lab, on, "member", "list", "-w", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["members"]


def test_install_starts_a_healthy_three_member_tls_cluster_that_serves_writes(elab, three):
    assert sorted(m["name"] for m in members_of(elab, "etcd-1")) == ["etcd-1", "etcd-2", "etcd-3"]
    assert etcdctl(elab, "etcd-1", "put", "/kf/first", "hello").returncode == 0
    got = etcdctl(elab, "etcd-3", "get", "/kf/first", "--print-value-only")
    assert got.stdout.strip() == "hello"
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        assert elab.exec(n, ["stat", "-c", "%a %U %G", "/var/lib/etcd"]).stdout.split() == ["700", "etcd", "etcd"]
        assert elab.exec(n, ["stat", "-c", "%a %U", f"{ETCD_PKI}/server.key"]).stdout.split() == ["600", "etcd"]
        assert elab.exec(n, ["test", "-e", "/usr/sbin/policy-rc.d"]).returncode != 0  # put back as it was


def test_status_shows_three_healthy_members_and_one_leader(elab, three):
    res = kf("etcd", "status", "-i", str(three), "-o", "json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert [m["healthy"] for m in st["members"]] == [True, True, True]
    assert sum(m["is_leader"] for m in st["members"]) == 1 and st["leader"] in ("etcd-1", "etcd-2", "etcd-3")
    table = kf("etcd", "status", "-i", str(three))
    assert "3/3 healthy" in table.stdout


def test_a_second_install_changes_nothing(elab, three):
    res = kf("etcd", "install", "-i", str(three), "--yes")
    assert res.returncode == 0, res.stderr
    assert "nothing to do" in res.stdout
    report = json.loads(sorted(three.parent.glob(".kubeforge/*/runs/*etcd-install*/report.json"))[-1].read_text())
    assert {s["status"] for s in report["steps"]} == {"unchanged"}, [s for s in report["steps"] if s["status"] != "unchanged"]


def test_a_client_without_a_certificate_is_refused(elab, three):
    res = etcdctl(elab, "etcd-1", "get", "/kf/first", tls=False)
    assert res.returncode != 0
    res = elab.exec("etcd-1", ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints=https://{elab.address('etcd-1')}:2379",
                               f"--cacert={ETCD_PKI}/ca.crt", "--dial-timeout=3s", "--command-timeout=5s", "get", "/kf/first"])
    assert res.returncode != 0 and "hello" not in res.stdout
