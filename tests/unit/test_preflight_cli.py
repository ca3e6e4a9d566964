"""The facts and preflight commands' own input checks, through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

INVENTORY = Path(__file__).parent.parent.parent / "inventories" / "ha-external-etcd.yaml"


def _kubeforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=60)


def test_preflight_rejects_an_unknown_output_format_with_a_usage_error():
    proc = _kubeforge("preflight", "-i", str(INVENTORY), "-o", "xml")
    assert proc.returncode == 2
    assert "'xml' is not one of 'table', 'json', 'yaml'" in proc.stderr


def test_facts_rejects_a_host_name_that_is_not_in_the_inventory_and_lists_the_known_ones():
    proc = _kubeforge("facts", "-i", str(INVENTORY), "--hosts", "cp-1,cp-9")
    assert proc.returncode == 2
    assert "no host named 'cp-9'" in proc.stderr and "etcd-1, etcd-2" in proc.stderr


def test_preflight_on_a_missing_inventory_says_which_file():
    proc = _kubeforge("preflight", "-i", "/nonexistent/inventory.yaml")
    assert proc.returncode == 3
    assert "/nonexistent/inventory.yaml" in proc.stderr
