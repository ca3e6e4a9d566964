"""The etcd commands' refusals that need no host: stacked etcd, unsafe upgrades, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.execute import Journal
from kubeforge.model.versions import parse_etcd
from kubeforge.plan.etcd.upgrade import upgrade_phases
from kubeforge.plan.phase import Plan
from kubeforge.plan.steps import LocalStep, RunStep
from kubeforge.workflows.etcd.restore import find_manifest
from kubeforge.workflows.etcd.upgrade import plan_upgrade, unfinished_kubernetes_upgrade
from tests.factories import make_cluster

REPO = Path(__file__).resolve().parents[2]


def kf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def stacked(tmp_path) -> Path:
    inv = tmp_path / "stacked.yaml"
    shutil.copy(REPO / "inventories" / "ha-stacked-haproxy.yaml", inv)
    return inv


def test_install_on_stacked_etcd_says_kubeadm_runs_it_and_exits_cleanly(stacked):
    res = kf("etcd", "install", "-i", str(stacked), "--yes")
    assert res.returncode == 0, res.stderr
    assert "stacked" in res.stdout and "kubeadm" in res.stdout


def test_restore_of_stacked_etcd_looks_for_a_backup_before_asking_any_host(stacked):
    res = kf("etcd", "restore", "-i", str(stacked), "--from", "latest", "--yes")
    assert res.returncode == 3 and "no verified backup to restore" in res.stderr


def test_restore_takes_break_lock_which_the_lock_refusal_of_a_killed_run_names(stacked):
    # a restore killed mid-run leaves the cluster lock; the refusal of the re-run says --break-lock
    res = kf("etcd", "restore", "-i", str(stacked), "--from", "latest", "--break-lock", "--yes")
    assert res.returncode == 3 and "no verified backup to restore" in res.stderr, res.stderr


def test_status_rejects_an_unknown_output_format(stacked):
    res = kf("etcd", "status", "-i", str(stacked), "-o", "xml")
    assert res.returncode == 2 and "'xml' is not one of 'table', 'json', 'yaml'" in res.stderr


def test_restore_from_a_backup_that_does_not_exist_names_where_it_looked(tmp_path):
    cluster = make_cluster(tmp_path)
    with pytest.raises(Exception, match="no such backup manifest"):
        find_manifest(cluster, "nope", tmp_path / "backups")
    with pytest.raises(Exception, match="no verified backup"):
        find_manifest(cluster, "latest", tmp_path / "backups")


def test_an_unfinished_kubernetes_upgrade_blocks_an_etcd_upgrade_before_any_host_is_asked(tmp_path):
    cluster = make_cluster(tmp_path)
    assert unfinished_kubernetes_upgrade(cluster.runs_dir) is None
    journal = Journal.create(cluster.runs_dir, "upgrade 1.35.0")  # started, never ended
    assert unfinished_kubernetes_upgrade(cluster.runs_dir) == journal.run_id
    with pytest.raises(SafetyRefusal, match="Kubernetes upgrade is unfinished"):
        plan_upgrade(cluster, None, "3.6.5", snapshot=lambda: True)  # no pool: nothing can be touched
    journal.finish("succeeded")
    assert unfinished_kubernetes_upgrade(cluster.runs_dir) is None


def test_an_etcd_upgrade_snapshots_first_then_rolls_each_hop_with_the_leader_last(tmp_path):
    cluster = make_cluster(tmp_path, etcd_version="3.4.23")
    hops = [parse_etcd("3.5.21"), parse_etcd("3.6.5")]
    plan = Plan("etcd upgrade 3.6.5", tuple(upgrade_phases(cluster, hops, "etcd-1", lambda: True)))
    assert isinstance(plan.phases[0].steps[0], LocalStep)
    assert [p.name for p in plan.phases[1:]] == ["UpgradeEtcd-3.5.21", "CheckEtcdClusterVersion-3.5.21",
                                                 "UpgradeEtcd-3.6.5", "CheckEtcdClusterVersion-3.6.5"]
    for p in plan.phases[1::2]:
        assert p.strategy.kind == "rolling"
        assert [lane.host for lane in p.lanes] == ["etcd-2", "etcd-3", "etcd-1"]
    install = next(s for s in plan.steps if isinstance(s, RunStep) and s.title == "Install etcd 3.5.21")
    assert "w=3.5.21" in install.command.script and "policy-rc.d" in install.command.script

