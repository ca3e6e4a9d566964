"""`node remove` at the command line where no host needs to be reached: refusals (exit 7) and bad
names (exit 2) come before any connection, and leave no run to resume."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def kubeforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, cwd=cwd, check=False)


@pytest.fixture
def inventory(tmp_path) -> Path:
    inv = tmp_path / "inventory.yaml"
    shutil.copy(ROOT / "inventories" / "ha-external-etcd.yaml", inv)
    return inv


def nothing_ran(tmp_path: Path) -> bool:
    return not list((tmp_path / ".kubeforge").rglob("journal.jsonl"))


@pytest.mark.parametrize("names,says", [
    (["cp-1"], "cp-1 is the first control plane"),
    (["etcd-1", "etcd-3"], "leaves 1 of 3 etcd members"),
])
def test_an_unsafe_removal_is_refused_with_exit_7_before_any_host_is_reached(inventory, tmp_path, names, says):
    res = kubeforge("node", "remove", *names, "-i", str(inventory), "--yes", cwd=tmp_path)
    assert res.returncode == 7, res.stderr
    assert says in res.stderr and "nothing was changed" in res.stderr and "Traceback" not in res.stderr
    assert nothing_ran(tmp_path)


def test_a_name_not_in_the_inventory_is_a_usage_error_that_says_to_keep_the_host_listed(inventory, tmp_path):
    res = kubeforge("node", "remove", "worker-9", "-i", str(inventory), "--yes", cwd=tmp_path)
    assert res.returncode == 2
    assert "'worker-9'" in res.stderr and "worker-3" in res.stderr and "stays in the inventory" in res.stderr
    assert nothing_ran(tmp_path)


def test_the_refusal_is_one_json_error_object_with_output_json(inventory, tmp_path):
    import json

    res = kubeforge("node", "remove", "cp-1", "-i", str(inventory), "-o", "json", cwd=tmp_path)
    assert res.returncode == 7
    doc = json.loads(res.stdout)
    assert doc["error"]["exit_code"] == 7 and doc["error"]["category"] == "refused"


def test_node_remove_is_listed_in_the_help(tmp_path):
    res = kubeforge("node", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "remove" in res.stdout


def test_no_name_is_a_usage_error_listing_the_inventorys_hosts(inventory, tmp_path):
    res = kubeforge("node", "remove", "-i", str(inventory), "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "name at least one host" in res.stderr and "worker-3" in res.stderr
    assert nothing_ran(tmp_path)
