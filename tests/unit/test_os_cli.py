"""`os upgrade` at the command line where no host needs to be reached: a name that is not in the
inventory is a usage error (exit 2) before any connection, and the command is listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kubeforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, cwd=cwd, check=False)


def test_os_upgrade_of_a_host_not_in_the_inventory_is_a_usage_error_before_any_host_is_reached(tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text((ROOT / "inventories" / "ha-external-etcd.yaml").read_text())
    res = kubeforge("os", "upgrade", "worker-9", "-i", str(inv), "--dry-run", cwd=tmp_path)
    assert res.returncode == 2 and "no host named 'worker-9'" in res.stderr and "worker-3" in res.stderr
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / ".kubeforge").rglob("journal.jsonl"))


def test_os_upgrade_and_node_replace_are_listed_in_the_help(tmp_path):
    assert "upgrade" in kubeforge("os", "--help", cwd=tmp_path).stdout
    assert "replace" in kubeforge("node", "--help", cwd=tmp_path).stdout
