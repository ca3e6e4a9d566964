"""The simulator's stacked etcd: the etcd image package, kubeadm's etcd command line, member add
through a real etcd's JSON gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.need import skip_or_fail
from tests.sim import build_debs
from tests.sim.kubesim import etcdpod, files, host
from tests.sim.testing import LoopbackEtcd


def _etcd_debs_dir() -> Path:
    from tests.lab.mirror import DEB_CACHE

    try:
        build_debs.etcd_debs(str(DEB_CACHE))
    except (OSError, ValueError) as e:
        skip_or_fail(f"Debian's etcd 3.4.23 .debs are needed (python -m tests.lab prepare caches them): {e}")
    return DEB_CACHE


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_etcd_image_package_carries_debians_real_binaries_and_kubeadm_pulls_it(tmp_path):
    debs = _etcd_debs_dir()
    build_debs.build(str(tmp_path), ["1.34.2", "1.35.1"], str(debs))
    images = sorted(tmp_path.glob("kubernetes/v*/deb/kubesim-etcd-image_*.deb"))
    assert [p.parent.parent.name for p in images] == ["v1.34", "v1.35"]
    assert os.path.samefile(images[0], images[1])  # built once, linked into every minor
    assert field(images[0], "Package") == "kubesim-etcd-image" and field(images[0], "Architecture") == "amd64"
    assert "kubesim-etcd-image (>= 3.4.23)" in field(tmp_path / "kubernetes/v1.34/deb/kubeadm_1.34.2-1.1_all.deb",
                                                      "Depends")
    subprocess.run(["dpkg-deb", "-x", str(images[0]), str(tmp_path / "x")], check=True)
    out = subprocess.run([str(tmp_path / "x" / etcdpod.IMAGE_DIR.lstrip("/") / "etcd"), "--version"],
                         capture_output=True, text=True)
    assert "etcd Version: 3.4.23" in out.stdout
    assert not (tmp_path / "x/usr/bin").exists()  # never Debian's etcd-server with its service


def test_without_etcd_debs_kubeadm_depends_on_no_image(tmp_path):
    build_debs.build(str(tmp_path), ["1.34.2"])
    assert "kubesim-etcd-image" not in field(tmp_path / "kubernetes/v1.34/deb/kubeadm_1.34.2-1.1_all.deb", "Depends")
    assert not list(tmp_path.glob("kubernetes/v*/deb/kubesim-etcd-image_*"))


def test_missing_etcd_debs_are_named(tmp_path):
    assert build_debs.main(["--out", str(tmp_path / "out"), "--etcd-debs", str(tmp_path)]) == 1


def test_kubeadms_etcd_command_line_for_a_joining_member(tmp_path):
    with host.use_root(str(tmp_path)):
        etcdpod.write_manifest("cp-2", "10.77.4.12", "cp-1=https://10.77.4.11:2380,cp-2=https://10.77.4.12:2380",
                               existing=True, image="registry.k8s.io/etcd:3.6.6-0")
        flags = files.manifest_flags(files.read_manifest("etcd"))
    assert flags["name"] == "cp-2" and flags["data-dir"] == "/var/lib/etcd"
    assert flags["listen-client-urls"] == "https://127.0.0.1:2379,https://10.77.4.12:2379"
    assert flags["advertise-client-urls"] == "https://10.77.4.12:2379"
    assert flags["listen-peer-urls"] == flags["initial-advertise-peer-urls"] == "https://10.77.4.12:2380"
    assert flags["initial-cluster-state"] == "existing"
    assert flags["client-cert-auth"] == flags["peer-client-cert-auth"] == "true"
    assert flags["snapshot-count"] == "10000"
    assert flags["trusted-ca-file"] == flags["peer-trusted-ca-file"] == "/etc/kubernetes/pki/etcd/ca.crt"
    assert (tmp_path / "etc/kubernetes/manifests/etcd.yaml").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def etcd_root(tmp_path):
    if shutil.which("etcd") is None or shutil.which("openssl") is None:
        skip_or_fail("etcd-server and openssl are needed (apt: etcd-server openssl)")
    (tmp_path / "etcd").mkdir()
    etcd = LoopbackEtcd(str(tmp_path / "etcd"))
    pki = tmp_path / "root/etc/kubernetes/pki/etcd"
    pki.mkdir(parents=True)
    shutil.copy(etcd.ca, pki / "ca.crt")
    shutil.copy(etcd.client_pair[0], pki / "healthcheck-client.crt")
    shutil.copy(etcd.client_pair[1], pki / "healthcheck-client.key")
    yield etcd, str(tmp_path / "root")
    etcd.stop()


def test_a_joining_member_is_added_once_and_gets_the_whole_initial_cluster(etcd_root):
    etcd, root = etcd_root
    with host.use_root(root):
        assert etcdpod.healthy(etcd.url)
        first = etcdpod.add_member([etcd.url], "cp-2", "127.0.0.2")
        # a retried join (the first attempt failed later) finds its member instead of adding another
        again = etcdpod.add_member([etcd.url], "cp-2", "127.0.0.2")
    parts = sorted(first.split(","))
    assert parts[0] == "cp-2=https://127.0.0.2:2380" and parts[1].startswith("m1=http://127.0.0.1:")
    assert sorted(again.split(",")) == parts
    listed = etcd.etcdctl("member", "list").stdout
    assert listed.count("https://127.0.0.2:2380") == 1
