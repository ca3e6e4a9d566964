"""Restore on etcd 3.5 (Debian trixie's build from the lab mirror): `etcdutl snapshot restore` with
--bump-revision and --mark-compacted, and a member's machine lost in the middle of a restore
(continued with --resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.test_etcd_lab import (
    etcdctl,
    inventory_with,
    kf,
    power_loss_during,
)

pytestmark = pytest.mark.lab

VERSION = "3.5.16"
BUMP = 1_000_000_000  # what kubeforge asks etcdutl to add to the revision


@pytest.fixture(scope="module")
def elab(lab_factory):
    # etcd-3 keeps its disk across a power cycle, like a real machine that lost power
    return lab_factory([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))],
                       persistent=("etcd-3",))


@pytest.fixture(scope="module")
def inv35(elab, tmp_path_factory) -> Path:
    inv = inventory_with(elab, tmp_path_factory.mktemp("inv35") / "etcd35.yaml", ["etcd-1", "etcd-2", "etcd-3"])
    yaml = YAML()
    doc = yaml.load(inv.read_text())
    doc["spec"]["etcd"]["version"] = VERSION
    with inv.open("w") as f:
        yaml.dump(doc, f)
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    return inv


def revision(lab, on: str) -> int:
    res = etcdctl(lab, on, "endpoint", "status", "-w", "json")
    assert res.returncode == 0, res.stderr
    return int(json.loads(res.stdout)[0]["Status"]["header"]["revision"])


def test_members_run_the_inventorys_35_build(elab, inv35):
    st = json.loads(kf("etcd", "status", "-i", str(inv35), "-o", "json").stdout)
    assert st["healthy"] == 3 and {m["version"] for m in st["members"]} == {VERSION}


def test_a_35_restore_bumps_the_revision_so_clients_never_see_it_go_back(elab, inv35):
    for i in range(10):
        assert etcdctl(elab, "etcd-1", "put", f"/kf/r35/{i}", f"v{i}").returncode == 0
    res = kf("etcd", "backup", "-i", str(inv35), "-o", "json")
    assert res.returncode == 0, res.stderr
    manifest = json.loads(res.stdout)["manifest"]
    snap_rev = int(manifest["revision"])
    assert etcdctl(elab, "etcd-2", "del", "--prefix", "/kf/r35/").stdout.strip() == "10"
    res = kf("etcd", "restore", "-i", str(inv35), "--from", manifest["name"], "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        got = etcdctl(elab, n, "get", "--prefix", "/kf/r35/", "--print-value-only").stdout.split()
        assert got == [f"v{i}" for i in range(10)], n
        assert revision(elab, n) >= snap_rev + BUMP
    # the bumped revision was marked compacted: a watch from before it is refused, not replayed
    old = etcdctl(elab, "etcd-1", "get", "/kf/r35/0", f"--rev={snap_rev}")
    assert old.returncode != 0 and "compacted" in (old.stderr + old.stdout)


def test_a_machine_lost_mid_restore_is_named_and_resume_converges_where_a_plain_rerun_is_refused(elab, inv35):
    assert etcdctl(elab, "etcd-1", "put", "/kf/fault", "before").returncode == 0
    res = kf("etcd", "backup", "-i", str(inv35), "-o", "json")
    assert res.returncode == 0, res.stderr
    name = json.loads(res.stdout)["manifest"]["name"]
    assert etcdctl(elab, "etcd-1", "put", "/kf/fault", "after").returncode == 0
    # etcd is stopped everywhere once the snapshot is on etcd-3: pull the plug then
    code, out, err = power_loss_during(elab, "etcd-3", ["bash", "-c", "ls /var/lib/kubeforge/etcd/*.db"],
                                       "etcd", "restore", "-i", str(inv35), "--from", name, "--yes")
    assert code == 6, out + err
    assert "[etcd-3]" in err
    elab.start_machine("etcd-3")  # its etcd is enabled: it boots on its old data
    again = kf("etcd", "restore", "-i", str(inv35), "--from", name, "--yes")
    assert again.returncode == 7 and "--resume" in again.stderr, again.stdout + again.stderr
    res = kf("etcd", "restore", "-i", str(inv35), "--resume", "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        assert etcdctl(elab, n, "get", "/kf/fault", "--print-value-only").stdout.strip() == "before", n
    st = json.loads(kf("etcd", "status", "-i", str(inv35), "-o", "json").stdout)
    assert st["allHealthy"] and st["healthy"] == 3
