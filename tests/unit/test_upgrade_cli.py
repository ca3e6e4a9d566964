"""`kubeforge upgrade` input errors: one clear line, the right exit code, no host contacted (the
inventory's addresses are never reached: every case fails before the transport is opened)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "ha-external-etcd.yaml"


def kubeforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=60, check=False)


def test_a_target_that_is_not_a_version_is_a_usage_error():
    res = kubeforge("upgrade", "-i", str(INVENTORY), "--to", "latest")
    assert res.returncode == 2
    assert res.stderr.startswith("error: --to: 'latest' is not a version (expected X.Y.Z, e.g. 1.34.2)")


def test_a_run_id_without_resume_is_a_usage_error():
    res = kubeforge("upgrade", "-i", str(INVENTORY), "--to", "1.34.2", "20261122T074501Z-upgrade-1-34-2-3f9a")
    assert res.returncode == 2
    assert "only accepted after --resume" in res.stderr


def test_a_missing_inventory_is_an_input_error_naming_the_file(tmp_path):
    res = kubeforge("upgrade", "-i", str(tmp_path / "nope.yaml"), "--to", "1.34.2")
    assert res.returncode == 3
    assert "nope.yaml" in res.stderr


def test_the_help_lists_the_upgrade_options():
    res = kubeforge("upgrade", "--help")
    assert res.returncode == 0
    for option in ("--to", "--multi-hop", "--dry-run", "--resume", "--break-lock", "--yes"):
        assert option in res.stdout
