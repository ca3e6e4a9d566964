"""Every directory kubeforge creates on the operator's machine is 0700 whatever the umask, and an
existing one that others could write to is refused (exit 3) before anything is put in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge.errors import InputError
from kubeforge.model.files import private_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


def test_new_directories_and_their_new_parents_are_0700_under_umask_000(tmp_path, umask_000):
    d = private_dir(tmp_path / ".kubeforge" / "c1" / "pki" / "etcd")
    for p in (d, d.parent, d.parent.parent, d.parent.parent.parent):
        assert _mode(p) == 0o700, p


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_a_state_directory_others_can_write_to_is_refused(tmp_path, mode):
    state = tmp_path / ".kubeforge"
    state.mkdir()
    os.chmod(state, mode)
    with pytest.raises(InputError) as info:
        private_dir(state / "c1" / "runs")
    assert str(state) in str(info.value) and f"{mode:04o}" in str(info.value)
    assert info.value.exit_code == 3 and "chmod 700" in info.value.hint
    assert not (state / "c1").exists()


def test_a_sticky_world_writable_directory_outside_the_state_tree_is_fine(tmp_path):
    tmp = tmp_path / "shared"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    assert _mode(private_dir(tmp / "backups")) == 0o700
    assert private_dir(tmp) == tmp  # e.g. fetching a file into /tmp


def test_exist_ok_false_refuses_an_existing_directory(tmp_path):
    private_dir(tmp_path / "runs" / "r1", exist_ok=False)
    with pytest.raises(FileExistsError):
        private_dir(tmp_path / "runs" / "r1", exist_ok=False)


def test_render_under_umask_000_leaves_no_directory_others_can_open(tmp_path):
    shutil.copy(REPO / "inventories" / "single-node.yaml", tmp_path / "inv.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(f"umask 000; exec {sys.executable} -m kubeforge render -i inv.yaml -d out", shell=True,
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    loose = [p for p in tmp_path.rglob("*") if p.is_dir() and _mode(p) != 0o700]
    assert loose == []
    assert (tmp_path / ".kubeforge" / "single" / "pki").is_dir()


def test_a_world_writable_cluster_directory_stops_the_cli_with_exit_3(tmp_path):
    shutil.copy(REPO / "inventories" / "single-node.yaml", tmp_path / "inv.yaml")
    (tmp_path / ".kubeforge" / "single").mkdir(parents=True)
    os.chmod(tmp_path / ".kubeforge" / "single", 0o777)
    res = subprocess.run([sys.executable, "-m", "kubeforge", "render", "-i", "inv.yaml", "-d", "out"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "is writable by group and others" in res.stderr and "Traceback" not in res.stderr
    assert list((tmp_path / ".kubeforge" / "single").iterdir()) == []
