"""The lab harness's pure parts: layouts, the inventory it writes, apt sources, process identity."""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.lab.inventory import render_inventory
from tests.lab.layout import MAX_MACHINES, layout
from tests.lab.mirror import kube_versions, parse_print_uris
from tests.lab.paths import LabError, LabId
from tests.lab.procs import Proc, start_time
from tests.lab.rootfs import runner_apt_sources


def _inventory(spec, mode="auto"):
    machines = layout(spec)
    text = render_inventory(
        cluster_name="lab7", machines=[(m, LabId(7).address(i)) for i, m in enumerate(machines, 1)],
        key_file=Path("/k/id"), known_hosts=Path("/k/known_hosts"), mirror_url="http://10.77.11.1:8477",
        kubernetes_version="1.33.5", endpoint_mode=mode, vip=LabId(7).vip,
    )
    return YAML(typ="safe").load(text)["spec"]


def test_the_default_layout_is_three_machines_able_to_carry_a_three_member_etcd():
    machines = layout(None)
    assert [m.name for m in machines] == ["lab-1", "lab-2", "lab-3"]
    assert sum("etcd" in m.roles for m in machines) == 3
    assert [m.name for m in machines if "control-plane" in m.roles] == ["lab-1"]


def test_a_role_count_layout_names_machines_by_role_in_a_stable_order():
    names = [m.name for m in layout({"worker": 2, "control-plane": 2, "etcd": 3, "load-balancer": 1})]
    assert names == ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "worker-1", "worker-2", "lb-1"]


def test_explicit_layouts_keep_given_names_and_roles_and_mark_persistent_machines():
    machines = layout([("a", ["control-plane", "etcd"]), ["worker"]], persistent=["a"])
    assert [(m.name, m.roles, m.persistent) for m in machines] == [
        ("a", ("control-plane", "etcd"), True), ("lab-2", ("worker",), False)]


@pytest.mark.parametrize("bad", [{"master": 1}, [("x", ["master"])], 0, [("x", ["worker"]), ("x", ["worker"])]])
def test_layouts_with_unknown_roles_no_machines_or_repeated_names_are_refused(bad):
    with pytest.raises(LabError):
        layout(bad)


def test_lab_slots_get_their_own_bridge_subnet_and_mirror_port():
    a, b = LabId(0), LabId(3)
    assert (a.bridge, a.gateway, a.address(1), a.mirror_port) == ("kfnbr0", "10.77.4.1", "10.77.4.11", 8470)
    assert (b.bridge, b.gateway, b.address(8), b.mirror_port) == ("kfnbr3", "10.77.7.1", "10.77.7.18", 8473)
    assert len(a.machine_name(40)) + len("vb-") <= 15  # the veth name nspawn derives must fit IFNAMSIZ


def test_a_fleet_lab_of_the_largest_layout_has_distinct_addresses_beside_the_gateway_and_vip():
    lab_id = LabId(99)
    n = MAX_MACHINES
    addresses = [lab_id.address(i) for i in range(1, n + 1)]
    assert len(set(addresses)) == n
    assert lab_id.vip not in addresses and lab_id.gateway not in addresses
    assert all(ipaddress.ip_address(a) in lab_id.network for a in addresses)
    assert (lab_id.address(89), lab_id.address(90)) == ("10.77.103.99", "10.77.103.101")  # .100 is the VIP
    assert len(lab_id.machine_name(n)) + len("vb-") <= 15
    assert len(layout({"etcd": 3, "control-plane": 3, "worker": 94})) == 100


def test_one_control_plane_gets_no_balancer_and_etcd_on_its_own_hosts_is_external():
    spec = _inventory(None)
    assert spec["controlPlaneEndpoint"] == {"host": "10.77.11.11", "port": 6443, "mode": "none"}
    assert spec["etcd"]["topology"] == "external" and spec["etcd"]["version"] == "3.4.23"
    assert spec["packages"] == {"source": "mirror", "mirrorURL": "http://10.77.11.1:8477"}
    assert spec["ssh"] == {"user": "kube", "port": 22, "identityFile": "/k/id", "knownHosts": "/k/known_hosts",
                           "hostKeyPolicy": "strict"}


def test_several_control_planes_use_haproxy_behind_a_free_vip_or_point_at_the_first_one():
    with_lb = _inventory({"etcd": 3, "control-plane": 2, "worker": 2, "load-balancer": 1})
    assert with_lb["controlPlaneEndpoint"] == {"host": "10.77.11.100", "port": 6443, "mode": "haproxy", "interface": "host0"}
    assert "10.77.11.100" not in {h["address"] for h in with_lb["hosts"]}
    external = _inventory({"control-plane": 2, "etcd": 3}, mode="external")
    assert external["controlPlaneEndpoint"]["host"] == next(h["address"] for h in external["hosts"] if h["name"] == "cp-1")
    with pytest.raises(LabError, match="load-balancer"):
        _inventory({"control-plane": 2, "etcd": 3}, mode="haproxy")


def test_etcd_exactly_on_the_control_planes_is_stacked():
    spec = _inventory([("cp-1", ["control-plane", "etcd"]), ("w-1", ["worker"])])
    assert spec["etcd"]["topology"] == "stacked"


def test_runner_sources_in_deb822_and_one_line_format_become_one_line_entries(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.example/ubuntu\nSuites: jammy\nComponents: main\n"
    )
    (tmp_path / "sources.list").write_text("deb http://sec.example/debian-security bookworm-security main # x\n")
    assert runner_apt_sources(tmp_path) == [
        "deb http://mirror.example/debian bookworm main contrib",
        "deb http://mirror.example/debian bookworm-updates main contrib",
        "deb http://sec.example/debian-security bookworm-security main",
    ]


def test_a_runner_without_a_bookworm_source_is_a_clear_error(tmp_path):
    with pytest.raises(LabError, match="no Debian 'bookworm' source"):
        runner_apt_sources(tmp_path)


def test_apt_print_uris_lines_with_and_without_checksums_are_parsed():
    text = (
        "'http://deb.example/pool/e/etcd-server_3.4.23-4+b4_amd64.deb' etcd-server_3.4.23-4+b4_amd64.deb 6208 MD5Sum:0f1e\n"
        "'http://sec.example/pool/h/haproxy_2.6.12-1%2bdeb12u4_amd64.deb' haproxy_2.6.12-1+deb12u4_amd64.deb 2042596 \n"
        "unrelated noise\n"
    )
    assert parse_print_uris(text) == [
        ("http://deb.example/pool/e/etcd-server_3.4.23-4+b4_amd64.deb", "etcd-server_3.4.23-4+b4_amd64.deb", 6208, "MD5Sum:0f1e"),
        ("http://sec.example/pool/h/haproxy_2.6.12-1%2bdeb12u4_amd64.deb", "haproxy_2.6.12-1+deb12u4_amd64.deb", 2042596, ""),
    ]


def test_mirror_kube_versions_are_listed_oldest_first_from_kubeadm_packages(tmp_path):
    for minor, patch in (("v1.34", "1.34.2"), ("v1.33", "1.33.10"), ("v1.33", "1.33.5")):
        d = tmp_path / "kubernetes" / minor / "deb"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"kubeadm_{patch}-1.1_all.deb").write_bytes(b"")
        (d / f"kubelet_{patch}-1.1_all.deb").write_bytes(b"")
    assert kube_versions(tmp_path) == ["1.33.5", "1.33.10", "1.34.2"]


def test_a_recorded_process_is_alive_only_while_pid_and_start_time_both_match():
    p = subprocess.Popen(["sleep", "30"])
    try:
        rec = Proc(p.pid, start_time(p.pid))
        assert rec.alive()
        assert not Proc(p.pid, str(int(rec.started) + 1)).alive()  # same PID, another process
    finally:
        p.kill()
        p.wait()
    assert not rec.alive()


def test_waiting_for_a_process_reaps_it_and_reports_it_gone():
    p = subprocess.Popen(["sleep", "0.1"])
    p.returncode = 0  # leave reaping to the Proc, as the lab does for its detached children
    rec = Proc(p.pid, start_time(p.pid))
    started = time.monotonic()
    assert rec.wait_gone(5)
    assert time.monotonic() - started < 5


def test_without_the_lab_tools_the_reason_names_what_is_missing(monkeypatch):
    from tests.lab import fixtures

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(fixtures.os, "geteuid", lambda: 0)
    reason = fixtures.lab_unavailable()
    assert reason is not None and "systemd-nspawn" in reason and "mmdebstrap" in reason


def test_a_missing_lab_skips_by_hand_and_fails_under_ci(monkeypatch):
    from tests.need import skip_or_fail

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        skip_or_fail("the lab needs root")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and this test cannot run: the lab needs root"):
        skip_or_fail("the lab needs root")


def test_extra_etcd_versions_are_read_from_a_debian_packages_index():
    from tests.lab.etcd_extra import parse_packages

    index = (
        "Package: etcd-client\nSource: etcd\nVersion: 3.5.16-4\nArchitecture: amd64\n"
        "Filename: pool/main/e/etcd/etcd-client_3.5.16-4_amd64.deb\nSize: 7\nSHA256: ab\nDescription: x\n continued\n\n"
        "Package: etcd-server\nVersion: 3.5.16-4\nArchitecture: amd64\n"
        "Filename: pool/main/e/etcd/etcd-server_3.5.16-4_amd64.deb\nSize: 9\nSHA256: cd\n\n"
        "Package: etcd-discovery\nVersion: 1\nArchitecture: amd64\nFilename: x.deb\nSize: 1\nSHA256: ef\n"
    )
    got = parse_packages(index)
    assert [(s["Package"], s["Version"], s["Size"], s["SHA256"]) for s in got] == [
        ("etcd-client", "3.5.16-4", "7", "ab"), ("etcd-server", "3.5.16-4", "9", "cd")]


def test_upstream_etcd_version_drops_the_debian_revision_and_binnmu():
    from pathlib import Path

    from tests.lab.etcd_extra import upstream_version

    assert upstream_version(Path("etcd-server_3.4.23-4+b4_amd64.deb")) == "3.4.23"
    assert upstream_version(Path("etcd-client_3.5.30-2_amd64.deb")) == "3.5.30"


class _DisksOnly:
    """The part of a Lab that tests/lab/disks.py drives -- machines with persistent disks, stopped
    and started -- where "started" is the machine's real overlay mounted (tests/lab/machine.py) and
    nothing boots on it: the saved layers' whiteouts and opaque dirs are the kernel's own."""

    def __init__(self, run_dir: Path, rootfs: Path, names: list[str]) -> None:
        from types import SimpleNamespace

        from tests.lab.layout import MachineSpec

        self.run_dir, self.rootfs, self.id = run_dir, rootfs, LabId(0)
        self.machines = {n: SimpleNamespace(spec=MachineSpec(n, ("worker",), True)) for n in names}
        self.up: set[str] = set()

    def root(self, name: str) -> Path:
        return self.run_dir / "machines" / name / "root"

    def running(self, name: str) -> bool:
        return name in self.up

    def stop_machine(self, name: str) -> None:
        from tests.lab import machine as mach

        mach.unmount_overlay(self.run_dir / "machines" / name)
        self.up.discard(name)

    shutdown_machine = stop_machine

    def start_machines(self, names: list[str]) -> None:
        from tests.lab import machine as mach

        for n in names:
            mach.mount_overlay(self.rootfs, self.run_dir / "machines" / n)
            self.up.add(n)


@pytest.fixture
def disks_lab(tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting overlays needs root")
    rootfs = tmp_path / "rootfs"
    for f, text in {"etc/kept": "base", "etc/deleted": "base", "etc/changed": "base",
                    "opt/app/old-1": "base", "opt/app/old-2": "base"}.items():
        (rootfs / f).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / f).write_text(text)
    lab = _DisksOnly(tmp_path / "run", rootfs, ["m1", "m2"])
    try:
        lab.start_machines(["m1", "m2"])
    except LabError as e:
        lab.stop_machine("m1")
        pytest.skip(f"no overlay mounts here: {e}")
    try:
        yield lab
    finally:
        for n in list(lab.machines):
            lab.stop_machine(n)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_saved_disk_is_a_layer_whose_whiteouts_and_opaque_dirs_still_hide_the_files_below(disks_lab):
    import os
    import shutil
    import stat

    from tests.lab import disks

    root = disks_lab.root("m1")
    (root / "etc/deleted").unlink()  # a whiteout in the upper dir
    shutil.rmtree(root / "opt/app")  # a directory replaced: opaque in the upper dir
    (root / "opt/app").mkdir()
    (root / "opt/app/new").write_text("first")
    (root / "etc/changed").write_text("first")
    disks.save(disks_lab, "first")
    first = {"etc/kept": "base", "etc/changed": "first", "opt/app/new": "first"}
    assert _tree(root) == first
    layer = disks.layers(disks_lab, "first", "m1")[0]
    whiteout = os.lstat(layer / "etc/deleted")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0  # the kernel's whiteout, kept as it was
    assert os.getxattr(layer / "opt/app", "trusted.overlay.opaque") == b"y"

    # a disk saved while running on a saved one: a second layer on top of the first
    (root / "etc/kept").unlink()
    (root / "etc/second").write_text("second")
    disks.save(disks_lab, "second")
    second = {"etc/changed": "first", "etc/second": "second", "opt/app/new": "first"}
    assert _tree(root) == second
    assert disks.layers(disks_lab, "second", "m1")[1:] == disks.layers(disks_lab, "first", "m1")

    (root / "etc/changed").write_text("thrown away")
    (root / "opt/app/new").unlink()
    disks.restore(disks_lab, "first")
    assert _tree(root) == first and _tree(disks_lab.root("m2")) == _tree(disks_lab.rootfs)
    disks.save(disks_lab, "first")  # saved again: new layers; "second" still stands on the old ones
    disks.restore(disks_lab, "second")
    assert _tree(root) == second
    assert not any((disks_lab.run_dir / "machines/m1/upper").iterdir())  # a fresh upper dir over the layers


def test_a_restore_copies_nothing_and_the_rootfs_and_layers_stay_as_they_were(disks_lab):
    from tests.lab import disks

    root = disks_lab.root("m1")
    (root / "etc/changed").write_text("saved")
    disks.save(disks_lab, "s")
    layer = disks.layers(disks_lab, "s", "m1")[0]
    before = {p: p.stat().st_ino for p in layer.rglob("*")}
    for i in range(3):
        (root / "etc/changed").write_text(f"case {i}")
        (root / "etc/deleted").unlink()
        disks.restore(disks_lab, "s")
        assert (root / "etc/changed").read_text() == "saved" and (root / "etc/deleted").exists()
    assert {p: p.stat().st_ino for p in layer.rglob("*")} == before  # the same files: never copied nor touched
    assert (disks_lab.rootfs / "etc/changed").read_text() == "base"
    with pytest.raises(LabError, match="no saved disks 'missing'"):
        disks.restore(disks_lab, "missing")
