"""`reset` and `up` at the command line, where no host needs to be reached: a whole-cluster reset
without --yes and without a terminal refuses before touching anything; bad --resume usage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kubeforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, cwd=cwd, check=False)


def test_a_whole_cluster_reset_without_yes_and_without_a_terminal_refuses_and_shows_the_plan(tmp_path):
    inv = tmp_path / "inventory.yaml"
    shutil.copy(ROOT / "inventories" / "ha-external-etcd.yaml", inv)
    res = kubeforge("reset", "-i", str(inv), cwd=tmp_path)
    assert res.returncode == 2
    assert "no terminal to confirm on" in res.stderr and "--yes" in res.stderr
    assert "ResetNodes" not in res.stderr and "Reset Kubernetes nodes" in res.stderr  # the plan, by title
    assert not list((tmp_path / ".kubeforge").rglob("journal.jsonl"))  # nothing ran, nothing to resume


def test_reset_of_an_unknown_host_names_the_known_ones(tmp_path):
    inv = tmp_path / "inventory.yaml"
    shutil.copy(ROOT / "inventories" / "ha-external-etcd.yaml", inv)
    res = kubeforge("reset", "-i", str(inv), "--hosts", "nope", cwd=tmp_path)
    assert res.returncode == 2 and "'nope'" in res.stderr and "cp-1" in res.stderr


def test_a_run_id_without_resume_is_a_usage_error(tmp_path):
    res = kubeforge("up", "-i", str(ROOT / "inventories" / "single-node.yaml"), "20261122T000000Z-up", cwd=tmp_path)
    assert res.returncode == 2 and "only accepted after --resume" in res.stderr


def test_plan_has_up_and_upgrade(tmp_path):
    res = kubeforge("plan", "--help", cwd=tmp_path)
    assert res.returncode == 0 and " up " in res.stdout and " upgrade " in res.stdout
