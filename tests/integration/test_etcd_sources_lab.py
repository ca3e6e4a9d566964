"""etcd from release archives on real machines: `kubeforge etcd install` from a release URL (the lab
mirror's etcd-releases/, laid out like etcd's GitHub releases) and from an offline bundle, and a
bundle with a flipped byte refused before any host is touched. The same three machines serve every
case; etcd is wiped off them between cases."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.lab

MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
RELEASE = "3.5.16"
BUNDLED = "3.5.30"
BINARIES = ("etcd", "etcdctl", "etcdutl")
WIPE = ("systemctl stop etcd 2>/dev/null; systemctl disable etcd 2>/dev/null; "
        "rm -rf /var/lib/etcd /etc/etcd /etc/systemd/system/etcd.service /var/cache/kubeforge/etcd "
        "/usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl; systemctl daemon-reload; true")


def kf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slab(lab_factory):
    # etcd-1 doubles as the control plane the inventory needs
    return lab_factory([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))])


def releases(lab) -> Path:
    return lab.run_dir / "mirror" / "etcd-releases"


def inventory(lab, path: Path, version: str, *, release_url: str | None = None, bundle: Path | None = None) -> Path:
    yaml = YAML()
    doc = yaml.load(lab.inventory_path.read_text())
    doc["spec"]["etcd"]["version"] = version
    if release_url:
        doc["spec"]["etcd"]["releaseURL"] = release_url
    if bundle:
        doc["spec"]["packages"] = {"source": "offline", "bundleDir": str(bundle)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        yaml.dump(doc, f)
    cni = lab.inventory_path.with_name("cni.yaml")  # the lab's stand-in CNI, which `up` applies
    if cni.is_file():
        shutil.copy(cni, path.with_name("cni.yaml"))
    return path


def wipe(lab) -> None:
    for n in MEMBERS:
        assert lab.exec(n, ["sh", "-c", WIPE]).returncode == 0


def untouched(lab, n: str) -> list[str]:
    """What an etcd install would have left on ``n`` (empty: nothing)."""
    paths = ["/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/usr/local/bin/etcdutl", "/var/cache/kubeforge/etcd",
             "/etc/systemd/system/etcd.service", "/etc/etcd/pki", "/etc/etcd/etcd.env"]
    return [p for p in paths if lab.exec(n, ["test", "-e", p]).returncode == 0]


def bundle_from(lab, into: Path, version: str, *, flip: bool = False) -> Path:
    src = releases(lab) / f"v{version}"
    into.mkdir(parents=True)
    name = f"etcd-v{version}-linux-amd64.tar.gz"
    shutil.copy(src / "SHA256SUMS", into / "SHA256SUMS")
    data = bytearray((src / name).read_bytes())
    if flip:
        data[len(data) // 2] ^= 0x01
    (into / name).write_bytes(bytes(data))
    return into


def assert_cluster_from_archive(lab, inv: Path, version: str) -> None:
    res = kf("etcd", "status", "-i", str(inv), "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    st = json.loads(res.stdout)
    assert [m["healthy"] for m in st["members"]] == [True, True, True]
    assert sum(m["is_leader"] for m in st["members"]) == 1 and st["leader"] in MEMBERS
    for n in MEMBERS:
        assert lab.exec(n, ["/usr/local/bin/etcd", "--version"]).stdout.splitlines()[0] == f"etcd Version: {version}"
        for b in BINARIES[1:]:
            out = lab.exec(n, [f"/usr/local/bin/{b}", "version"]).stdout
            assert out.splitlines()[0] == f"{b} version: {version}", out
        assert lab.exec(n, ["stat", "-c", "%a %U", "/usr/local/bin/etcd"]).stdout.split() == ["755", "root"]
        unit = lab.exec(n, ["cat", "/etc/systemd/system/etcd.service"]).stdout
        assert "ExecStart=/usr/local/bin/etcd\n" in unit
        # nothing came from apt: etcdctl in the health gate and status was the unpacked one,
        # found through sudo's secure_path by the inventory's (non-root) SSH user
        assert lab.exec(n, ["dpkg-query", "-W", "etcd-server"]).returncode != 0
        found = lab.exec(n, ["runuser", "-u", "kube", "--", "sudo", "sh", "-c", "command -v etcdctl"])
        assert found.stdout.strip() == "/usr/local/bin/etcdctl", found.stdout + found.stderr


def test_a_bundle_with_a_flipped_byte_is_refused_with_exit_3_before_any_host_is_touched(slab, tmp_path_factory):
    root = tmp_path_factory.mktemp("flipped")
    bundle = bundle_from(slab, root / "bundle", BUNDLED, flip=True)
    inv = inventory(slab, root / "inventory.yaml", BUNDLED, bundle=bundle)
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    good = (releases(slab) / f"v{BUNDLED}" / "SHA256SUMS").read_text().split()[0]
    bad = hashlib.sha256((bundle / f"etcd-v{BUNDLED}-linux-amd64.tar.gz").read_bytes()).hexdigest()
    assert str(bundle / f"etcd-v{BUNDLED}-linux-amd64.tar.gz") in res.stderr
    assert good in res.stderr and bad in res.stderr
    for n in MEMBERS:
        assert untouched(slab, n) == [], n
    assert not list(root.glob(".kubeforge/*/runs/*/journal.jsonl"))  # no run started


@pytest.fixture(scope="module")
def from_release(slab, tmp_path_factory) -> Path:
    wipe(slab)
    inv = inventory(slab, tmp_path_factory.mktemp("release") / "inventory.yaml", RELEASE,
                    release_url=f"{slab.mirror_url}/etcd-releases")
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    return inv


def test_a_release_url_installs_a_healthy_three_member_cluster_into_usr_local_bin(slab, from_release):
    assert_cluster_from_archive(slab, from_release, RELEASE)
    cached = next(from_release.parent.glob(f".kubeforge/*/cache/etcd/v{RELEASE}/etcd-v{RELEASE}-linux-amd64.tar.gz"))
    sums = (releases(slab) / f"v{RELEASE}" / "SHA256SUMS").read_text().split()[0]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sums


def changed_steps(inv: Path) -> list[tuple[str, str, str]]:
    report = json.loads(sorted(inv.parent.glob(".kubeforge/*/runs/*etcd-install*/report.json"))[-1].read_text())
    return [(s["host"], s["title"], s["status"]) for s in report["steps"] if s["status"] != "unchanged"]


def test_a_second_install_from_the_release_url_changes_nothing(slab, from_release):
    res = kf("etcd", "install", "-i", str(from_release), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert changed_steps(from_release) == []
    assert "nothing changed" in res.stdout


def test_an_offline_bundle_installs_the_whole_cluster(slab, from_release, tmp_path_factory):
    wipe(slab)
    root = tmp_path_factory.mktemp("offline")
    bundle = bundle_from(slab, root / "bundle", BUNDLED)
    inv = inventory(slab, root / "inventory.yaml", BUNDLED, bundle=bundle)
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert_cluster_from_archive(slab, inv, BUNDLED)
    again = kf("etcd", "install", "-i", str(inv), "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed_steps(inv) == [] and "nothing changed" in again.stdout


def test_up_installs_etcd_from_the_release_archive_and_never_from_apt(slab, from_release, tmp_path_factory):
    wipe(slab)
    inv = inventory(slab, tmp_path_factory.mktemp("up") / "inventory.yaml", RELEASE,
                    release_url=f"{slab.mirror_url}/etcd-releases")
    res = kf("up", "-i", str(inv), "--yes", timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    assert_cluster_from_archive(slab, inv, RELEASE)


@pytest.mark.by_hand  # a lab and an `up` of its own, 29 s; the archive's install path runs in CI above (external etcd, up and etcd install)
def test_up_of_a_stacked_cluster_puts_the_archives_etcd_tools_on_the_control_plane(lab_factory, tmp_path_factory):
    # a control plane with the etcd role and no dedicated etcd hosts: kubeadm's stacked etcd
    lab = lab_factory([("cp-1", ("control-plane", "etcd"))])
    inv = inventory(lab, tmp_path_factory.mktemp("stacked") / "inventory.yaml", RELEASE,
                    release_url=f"{lab.mirror_url}/etcd-releases")
    res = kf("up", "-i", str(inv), "--yes", timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    for b in BINARIES[1:]:
        out = lab.exec("cp-1", [f"/usr/local/bin/{b}", "version"]).stdout
        assert out.splitlines()[0] == f"{b} version: {RELEASE}", out
    # the tools only: no etcd unit of kubeforge's and no Debian etcd package next to kubeadm's etcd
    assert lab.exec("cp-1", ["test", "-e", "/etc/systemd/system/etcd.service"]).returncode != 0
    assert lab.exec("cp-1", ["dpkg-query", "-W", "etcd-server"]).returncode != 0
    st = kf("etcd", "status", "-i", str(inv), "-o", "json")
    assert st.returncode == 0 and json.loads(st.stdout)["healthy"] == 1, st.stdout + st.stderr
    backup = kf("etcd", "backup", "-i", str(inv), "-o", "json")
    assert backup.returncode == 0 and json.loads(backup.stdout)["manifest"]["verified"], backup.stderr
    again = kf("up", "-i", str(inv), "--yes", timeout=1200)
    assert again.returncode == 0 and "no changes" in again.stdout, again.stdout + again.stderr[-2000:]
