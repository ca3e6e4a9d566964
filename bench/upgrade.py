"""Upgrade wall time on the lab, against the ideal, for 2 and 6 workers at batch 1 and batch 50%.

    sudo python -m bench.upgrade            # boots its own lab (13 machines), ~15 min

Two clusters, one after the other, on one lab: A (3 etcd, cp-1, 2 workers) and B (the same 3 etcd
after `kubeforge reset --purge` of A, cp-2, 6 workers). Each is brought up at 1.33.5 by `kubeforge
up`, upgraded to 1.34.2 with maxUnavailable 1, then to 1.35.1 with maxUnavailable 50%. For every
run, from its journal:

- per-node time: the mean, over the workers, of the sum of their own steps' durations (install,
  drain, upgrade node, restart, Ready gate, uncordon) — what one worker costs when nothing waits;
- ideal workers phase: per-node time x number of batches;
- actual workers phase: from the first worker step's start to the last one's end;
- the whole run's wall time (CLI process, facts and backup included), beside the other phases'.

A batched run's own per-node time already contains the slowdown of workers sharing the runner's
CPUs, so its ratio shows what the executor adds (waiting for the slowest of a batch, scheduling).
The "vs serial" column prices the batches at the per-node time of the same cluster's batch-1 run
instead, so it also shows the contention (here: a 2-core runner shared with other labs).

Goal: the workers phase within 1.2x of its ideal. Numbers only; no pass/fail assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CNI = (REPO / "tests" / "smoke" / "manifests" / "kubesim-cni.yaml").read_text()
ETCD = ("etcd-1", "etcd-2", "etcd-3")
CLUSTERS = {"bench-a": ("cp-1", 2), "bench-b": ("cp-2", 6)}
HOPS = (("1.34.2", "1"), ("1.35.1", "50%"))


def kf(workdir: Path, inventory: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(inventory)], capture_output=True,
                         text=True, cwd=workdir, timeout=1800, check=False)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"kubeforge {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return took, res


def inventory_for(doc: dict, name: str, cp: str, workers: list[str], batch: str) -> dict:
    d = json.loads(json.dumps(doc))
    d["metadata"]["name"] = name
    hosts = [h for h in d["spec"]["hosts"] if h["name"] in (*ETCD, cp, *workers)]
    d["spec"]["hosts"] = hosts
    d["spec"]["controlPlaneEndpoint"] = {"host": next(h["address"] for h in hosts if h["name"] == cp), "port": 6443,
                                         "mode": "external"}
    d["spec"]["etcd"]["topology"] = "external"
    d["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    d["spec"]["upgrade"] = {"maxUnavailable": batch, "drainTimeoutSeconds": 60, "nodeReadyTimeoutSeconds": 120}
    return d


def _t(rec: dict) -> float:
    return datetime.fromisoformat(rec["time"]).timestamp()


def analyse(run_dir: Path, workers: list[str], batch_size: int) -> dict:
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if r["type"] == "step"]
    wsteps = [r for r in steps if r["phase"] == "UpgradeWorkers"]
    per_worker = {w: sum(r["duration"] for r in wsteps if r["host"] == w or r["step"].endswith("-" + w)) for w in workers}
    per_node = sum(per_worker.values()) / len(per_worker)
    batches = -(-len(workers) // batch_size)
    start = min(_t(r) - r["duration"] for r in wsteps)
    end = max(_t(r) for r in wsteps)
    first = min(_t(r) - r["duration"] for r in steps)
    return {
        "per_node": per_node,
        "batches": batches,
        "ideal": per_node * batches,
        "actual": end - start,
        "before_workers": start - first,
    }


def main() -> None:
    from tests.lab import claims
    from tests.lab.lab import Lab
    from tests.lab.layout import layout

    index, fd = claims.claim()
    lab = Lab(layout({"etcd": 3, "control-plane": 2, "worker": 8}), index=index, kubernetes_version="1.33.5",
              log=lambda *a: None)
    rows = []
    try:
        t0 = time.monotonic()
        lab.up()
        print(f"lab {lab.id.name}: {len(lab.machines)} machines in {time.monotonic() - t0:.0f}s", flush=True)
        workdir = lab.run_dir / "bench-upgrade"
        workdir.mkdir(exist_ok=True)
        (workdir / "cni.yaml").write_text(CNI)
        doc = YAML(typ="safe").load(lab.write_inventory(workdir / "lab.yaml").read_text())
        all_workers = sorted(h["name"] for h in doc["spec"]["hosts"] if h["roles"] == ["worker"])
        taken = 0
        previous: Path | None = None
        for name, (cp, n) in CLUSTERS.items():
            workers = all_workers[taken:taken + n]
            taken += n
            if previous is not None:  # the etcd machines serve one cluster at a time
                kf(workdir, previous, "reset", "--purge", "--yes")
            inv = previous = workdir / f"{name}.yaml"
            YAML().dump(inventory_for(doc, name, cp, workers, "1"), inv.open("w"))
            took, _ = kf(workdir, inv, "up", "--yes")
            print(f"{name}: up with {n} workers in {took:.0f}s", flush=True)
            for version, batch in HOPS:
                YAML().dump(inventory_for(doc, name, cp, workers, batch), inv.open("w"))
                took, _ = kf(workdir, inv, "upgrade", "--to", version, "--yes")
                runs = sorted((workdir / ".kubeforge" / name / "runs").glob("*-upgrade"), key=lambda p: p.stat().st_mtime)
                size = max(1, int(n * float(batch[:-1]) / 100)) if batch.endswith("%") else int(batch)
                a = analyse(runs[-1], workers, size)
                rows.append((name, n, batch, version, took, a))
                print(f"{name}: -> {version} batch {batch}: {took:.0f}s", flush=True)
    finally:
        lab.down()
        claims.release(fd)
    print()
    print(f"{'workers':>7} {'batch':>5} {'hop':>7} {'batches':>7} {'per node':>9} {'ideal':>8} {'actual':>8} "
          f"{'ratio':>6} {'vs serial':>9} {'other phases':>12} {'run total':>9}")
    serial = {name: a["per_node"] for name, _, batch, _, _, a in rows if batch == "1"}
    for name, n, batch, version, took, a in rows:
        vs_serial = a["actual"] / (serial[name] * a["batches"])
        print(f"{n:>7} {batch:>5} {version:>7} {a['batches']:>7} {a['per_node']:>8.1f}s {a['ideal']:>7.1f}s "
              f"{a['actual']:>7.1f}s {a['actual'] / a['ideal']:>5.2f}x {vs_serial:>8.2f}x {a['before_workers']:>11.1f}s "
              f"{took:>8.1f}s")
    print("goal: workers phase within 1.20x of the ideal (per-node time x number of batches)")


if __name__ == "__main__":
    main()
