"""``kubeforge render`` end to end: real inventory, real PKI store, real files on disk."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeforge", "render", *args],
        capture_output=True, text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    target = tmp_path / "ha.yaml"
    shutil.copy(REPO / "inventories" / "ha-external-etcd.yaml", target)
    return target


def test_render_writes_one_tree_per_host_with_private_secrets(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_render("-i", str(inventory), "-d", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"]
    )
    init = out / "cp-1" / "etc/kubeforge/kubeadm-init.yaml"
    assert stat.S_IMODE(init.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "etcd-1/etc/etcd/pki/server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "etcd-1/etc/etcd/etcd.env").stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert (out / "cp-2/etc/kubernetes/pki/ca.crt").is_file()
    assert "created kubernetes-ca" in result.stdout and "cp-1" in result.stdout
    # the token is in the 0600 file, never in what the command prints
    token = next(line.split(":", 1)[1].strip() for line in init.read_text().splitlines() if "token:" in line)
    assert token not in result.stdout + result.stderr


def test_a_second_render_reuses_the_pki_and_gives_identical_files(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_render("-i", str(inventory), "-d", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = run_render("-i", str(inventory), "-d", str(out))
    assert again.returncode == 0, again.stderr
    assert "PKI: unchanged" in again.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_files_an_earlier_render_produced_are_pruned(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_render("-i", str(inventory), "-d", str(out)).returncode == 0
    leftover = out / "worker-1/etc/leftover.conf"
    leftover.write_text("from an older inventory\n")
    again = run_render("-i", str(inventory), "-d", str(out))
    assert not leftover.exists() and "removed 1 file" in again.stdout


def test_the_default_output_is_the_state_directory_beside_the_inventory(inventory: Path) -> None:
    assert run_render("-i", str(inventory)).returncode == 0
    assert (inventory.parent / ".kubeforge/prod-ha/rendered/cp-1/etc/kubeforge/applied.json").is_file()


def test_an_invalid_inventory_is_one_clear_message_and_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "inventories/ha-external-etcd.yaml").read_text().replace("roles: [worker]", "roles: [master]", 1))
    result = run_render("-i", str(bad), "-d", str(tmp_path / "out"))
    assert result.returncode == 3
    assert f"{bad}:" in result.stderr and "master" in result.stderr
    assert not (tmp_path / "out").exists()
