"""A 10-machine fleet on the lab (the CI-sized version of bench/fleet.py): 3 etcd + 3 control planes +
4 workers, light machines (tests/lab/lab.py LIGHT_ENVIRONMENT), from bare to every node Ready, then a
converged re-run that does nothing. Times are printed for docs/fleet.md, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

ROLES = {"etcd": 3, "control-plane": 3, "worker": 4}  # 20 until session 10: CI's 45-minute budget
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]


def kf(workdir: Path, inventory: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(inventory), "--yes"],
                         capture_output=True, text=True, timeout=600, cwd=workdir, check=False)
    return time.monotonic() - t0, res


def steps(workdir: Path, cluster: str) -> list[dict]:
    """The step records of the newest run."""
    runs = [p for p in (workdir / ".kubeforge" / cluster / "runs").iterdir() if (p / "journal.jsonl").exists()]
    newest = max(runs, key=lambda p: (p / "journal.jsonl").stat().st_mtime)
    records = [json.loads(line) for line in (newest / "journal.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("type") == "step"]


def test_a_fleet_of_10_comes_up_from_bare_machines_all_ready_and_a_second_up_does_nothing(lab_factory, tmp_path):
    t0 = time.monotonic()
    lab = lab_factory(ROLES, light=True)
    boot = time.monotonic() - t0
    inventory = lab.write_inventory(tmp_path / "fleet.yaml")
    cluster = lab.id.name

    up_time, res = kf(tmp_path, inventory, "up")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    done = [r for r in steps(tmp_path, cluster) if r["status"] == "done"]
    assert {r["host"] for r in done} >= set(lab.machines), "every machine had work done on it"
    state = json.loads(lab.exec("cp-1", [*KUBECTL, "sim", "state"], check=True).stdout)
    nodes = {f"cp-{i}" for i in (1, 2, 3)} | {f"worker-{i}" for i in range(1, ROLES["worker"] + 1)}
    assert {n for n, v in state["nodes"].items() if v.get("ready")} == nodes
    violations = json.loads(lab.exec("cp-1", [*KUBECTL, "sim", "violations"], check=True).stdout)
    assert violations == []

    rerun_time, res = kf(tmp_path, inventory, "up")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "nothing to do" in res.stdout
    assert [r["step"] for r in steps(tmp_path, cluster) if r["status"] == "done"] == []
    print(f"\nfleet of {len(lab.machines)}: boot {boot:.1f}s, up from bare {up_time:.1f}s ({len(done)} steps), "
          f"converged re-run {rerun_time:.1f}s")
