"""`kubeforge upgrade` end to end on the lab: real SSH, apt with real pins and holds from the lab's
mirror (one repository per minor), a real 3-member TLS etcd backed up before each hop; kubeadm,
kubelet and kubectl are the simulator (tests/sim), whose state and violations the tests read.

The tests of this module run in order on one lab brought up at 1.33.5 by `kubeforge up`:
dry run -> 1.35.1 refused without --multi-hop -> --multi-hop with a PodDisruptionBudget blocking one
worker's drain -> --resume stopped by Ctrl-C -> --resume with a worker's machine powered off
mid-run -> --resume to the end, then every invariant checked on the simulator's history."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]

ROLES = {"etcd": 3, "control-plane": 2, "worker": 2}
WORKERS = ("worker-1", "worker-2")
CONTROL_PLANES = ("cp-1", "cp-2")
PERSISTENT = ("worker-2",)  # powered off mid-run: keeps its disk, like a real server
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
CNI = """apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kubesim-cni
  namespace: kube-system
  labels:
    kubesim.io/cni: "true"
spec:
  selector:
    matchLabels: {app: kubesim-cni}
  template:
    metadata:
      labels: {app: kubesim-cni}
    spec:
      tolerations:
        - operator: Exists
      containers:
        - name: cni
          image: example.invalid/kubesim-cni:1
"""
GUARDED = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: guarded
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: guarded}
  template:
    metadata:
      labels: {app: guarded}
    spec:
      containers:
        - name: app
          image: example.invalid/app:1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: guarded
  namespace: default
spec:
  minAvailable: MIN
  selector:
    matchLabels: {app: guarded}
"""
# What a dry run must not change on a machine: packages, holds, apt sources, kubeforge's and
# kubeadm's files, the kubelet, the lock.
SNAPSHOT = r"""dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' kubeadm kubelet kubectl 2>/dev/null
find /etc/apt /etc/kubeforge /etc/kubernetes /var/lib/kubeforge /var/lib/kubelet -xdev -type f -exec sha256sum {} + 2>/dev/null | LC_ALL=C sort
echo "kubelet $(systemctl is-active kubelet)"
"""


@dataclass
class Env:
    lab: object
    dir: Path
    inventory: Path
    doc: dict

    def write_inventory(self, **upgrade) -> None:
        self.doc["spec"]["upgrade"] = {"drainTimeoutSeconds": 15, "nodeReadyTimeoutSeconds": 90, **upgrade}
        with self.inventory.open("w") as f:
            YAML().dump(self.doc, f)

    def kf(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.dir)

    @property
    def state_dir(self) -> Path:
        return self.dir / ".kubeforge" / self.doc["metadata"]["name"]

    def sim(self, what: str):
        return json.loads(self.lab.exec("cp-1", [*KUBECTL, "sim", what], check=True).stdout)

    def kubectl_apply(self, text: str) -> None:
        self.lab.exec("cp-1", [*KUBECTL, "apply", "-f", "-"], input=text, check=True)

    def upgrade_run(self) -> Path:
        """The run directory holding the journal of the upgrade to 1.35.1 (resumes append to it)."""
        runs = [p for p in (self.state_dir / "runs").iterdir() if (p / "journal.jsonl").exists()
                and journal(p)[0].get("workflow") == "upgrade 1.35.1"]
        assert len(runs) == 1, runs
        return runs[0]


def journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.strip()]


def steps(run_dir: Path) -> list[dict]:
    return [r for r in journal(run_dir) if r["type"] == "step"]


def snapshot(lab) -> dict[str, str]:
    return {name: lab.exec(name, ["bash", "-c", SNAPSHOT], check=True).stdout for name in lab.machines}


def wait_for(env: Env, proc: subprocess.Popen, step_suffix: str, timeout: float = 300) -> None:
    """Until the upgrade's journal has a step whose id ends with ``step_suffix`` done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        runs = [p for p in (env.state_dir / "runs").glob("*") if (p / "journal.jsonl").exists()]
        for run in runs:
            if any(r["type"] == "step" and r["step"].endswith(step_suffix) and r["status"] == "done" for r in journal(run)):
                return
        time.sleep(0.05)
    out = proc.communicate(timeout=60)[0] if proc.poll() is None else proc.stdout.read()
    pytest.fail(f"no step ...{step_suffix} was done in time; the run said:\n{out[-3000:]}")


def wait_ready(env: Env, node: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env.sim("state")["nodes"][node].get("ready"):
            return
        time.sleep(1)
    pytest.fail(f"{node} did not come back Ready")


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory(ROLES, persistent=PERSISTENT, kubernetes_version="1.33.5")
    d = tmp_path_factory.mktemp("upgrade-lab")
    doc = YAML(typ="safe").load(lab.write_inventory(d / "lab.yaml").read_text())
    doc["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(CNI)
    e = Env(lab, d, d / "inventory.yaml", doc)
    e.write_inventory(maxUnavailable="2")
    res = e.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    e.kubectl_apply(GUARDED.replace("MIN", "1"))
    return e


def test_a_dry_run_of_the_upgrade_changes_nothing_on_any_machine(env):
    before, history = snapshot(env.lab), len(env.sim("state")["history"])
    res = env.kf("upgrade", "--to", "1.34.2", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kubeadm upgrade apply v1.34.2" in res.stderr and "nothing was changed" in res.stdout
    assert snapshot(env.lab) == before
    assert len(env.sim("state")["history"]) == history


def test_plan_upgrade_prints_every_hop_read_only(env):
    before = snapshot(env.lab)
    res = env.kf("plan", "upgrade", "--to", "1.35.1", "--multi-hop")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Upgrade the first control plane (cp-1) to 1.34.2 (hop 1 of 2)" in res.stdout
    assert "Upgrade workers to 1.35.1 (hop 2 of 2)" in res.stdout
    assert snapshot(env.lab) == before


def test_skipping_a_minor_is_refused_without_multi_hop_naming_the_hops_and_changing_nothing(env):
    before = snapshot(env.lab)
    res = env.kf("upgrade", "--to", "1.35.1", "--yes")
    assert res.returncode == 7, res.stdout + res.stderr
    assert "1.33.5 -> 1.35.1 skips minors; with --multi-hop the path is 1.34.2 -> 1.35.1" in res.stderr
    assert snapshot(env.lab) == before


def test_a_disruption_budget_blocking_a_drain_stops_that_worker_uncordoned_while_the_batch_finishes(env):
    guarded = next(p["node"] for p in env.sim("state")["pods"].values() if p.get("ownerName") == "guarded")
    other = next(w for w in WORKERS if w != guarded)
    res = env.kf("upgrade", "--to", "1.35.1", "--multi-hop", "--yes")
    assert res.returncode == 6, res.stdout + res.stderr
    assert "Upgrade path: 1.34.2 -> 1.35.1" in res.stderr
    assert f"drain of {guarded} failed; uncordoned it again" in res.stderr
    nodes = env.sim("state")["nodes"]
    assert nodes[guarded]["unschedulable"] is False and nodes[guarded]["kubeletVersion"] == "v1.33.5"
    assert nodes[other]["kubeletVersion"] == "v1.34.2"  # the rest of the batch finished
    assert all(nodes[cp]["kubeletVersion"] == "v1.34.2" for cp in CONTROL_PLANES)
    done = steps(env.upgrade_run())
    # a verified backup is the first thing the run did, before any host was touched
    assert done[0]["step"] == "BackupEtcd/local/v1.34.2-etcd-backup" and done[0]["status"] == "done"
    manifests = [json.loads(p.read_text()) for p in (env.state_dir / "backups").glob("*.json")]
    assert manifests and all(m["verified"] for m in manifests)
    first_worker = next(i for i, r in enumerate(done) if r["phase"] == "UpgradeWorkers")
    assert all(r["phase"] not in ("UpgradeFirstControlPlane", "UpgradeControlPlanes") for r in done[first_worker:])


def test_ctrl_c_mid_run_stops_cleanly_and_leaves_a_resumable_journal(env):
    env.kubectl_apply(GUARDED.replace("MIN", "0"))
    env.write_inventory(maxUnavailable="1")
    proc = env.popen("upgrade", "--to", "1.35.1", "--multi-hop", "--yes", "--resume")
    # Mid-phase, on the first control plane of hop 2: the next steps of its lane are still to come.
    wait_for(env, proc, "UpgradeFirstControlPlane/cp-1/v1.35.1-kubeadm")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 8, out
    assert "continue with --resume" in out
    last = journal(env.upgrade_run())[-1]
    assert (last["type"], last["outcome"]) == ("end", "interrupted")
    done = {r["step"] for r in steps(env.upgrade_run()) if r["status"] == "done"}
    assert "BackupEtcd/local/v1.35.1-etcd-backup" in done
    assert "UpgradeWorkers/cp-1/v1.35.1-uncordon-worker-2" not in done  # stopped part way


def test_a_worker_powered_off_mid_upgrade_fails_cleanly_and_resume_finishes_without_repeating_a_step(env):
    proc = env.popen("upgrade", "--to", "1.35.1", "--multi-hop", "--yes", "--resume")
    # worker-1 is being upgraded; worker-2 (its package source already switched) is next in line
    wait_for(env, proc, "UpgradeWorkers/cp-1/v1.35.1-drain-worker-1", timeout=600)
    env.lab.stop_machine("worker-2")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 6, out
    failures = [line for line in out.splitlines() if line.startswith("failed [")]
    assert failures and all("worker-2" in line for line in failures), out
    assert env.sim("state")["nodes"]["worker-1"]["kubeletVersion"] == "v1.35.1"  # its batch finished
    env.lab.start_machine("worker-2")
    wait_ready(env, "worker-2")
    res = env.kf("upgrade", "--to", "1.35.1", "--multi-hop", "--yes", "--resume")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = steps(env.upgrade_run())
    completed = [r["step"] for r in records if r["status"] in ("done", "unchanged")]
    assert len(completed) == len(set(completed)), "a completed step ran again"
    assert journal(env.upgrade_run())[-1]["outcome"] == "succeeded"


def test_after_the_upgrade_every_node_runs_and_holds_the_target_and_the_simulator_saw_no_violation(env):
    nodes = env.sim("state")["nodes"]
    assert {n: v["kubeletVersion"] for n, v in nodes.items()} == {n: "v1.35.1" for n in (*CONTROL_PLANES, *WORKERS)}
    assert not any(v["unschedulable"] for v in nodes.values())
    for name in (*CONTROL_PLANES, *WORKERS):
        versions = env.lab.exec(name, ["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "kubeadm", "kubelet", "kubectl"],
                                check=True).stdout.split("\n")
        assert all(line.split()[1].startswith("1.35.1-") for line in versions if line), (name, versions)
        held = env.lab.exec(name, ["apt-mark", "showhold"], check=True).stdout.split()
        assert {"kubeadm", "kubelet", "kubectl"} <= set(held), (name, held)
    assert env.sim("violations") == []


def test_control_planes_went_before_workers_and_no_more_workers_than_allowed_were_cordoned_at_once(env):
    history = env.sim("state")["history"]
    # per hop, every control-plane upgrade event comes before the first worker is cordoned
    for version in ("v1.34.2", "v1.35.1"):
        cp_done = max(h["time"] for h in history if h["node"] in CONTROL_PLANES
                      and h["event"] in ("upgrade-apply", "upgrade-node") and h.get("to") == version)
        worker_upgrades = [h["time"] for h in history if h["node"] in WORKERS and h["event"] == "upgrade-node"
                           and h.get("to") == version]
        assert worker_upgrades and cp_done < min(worker_upgrades)
    cordoned: set[str] = set()
    most = 0
    for h in sorted(history, key=lambda h: h["time"]):
        if h["node"] in WORKERS and h["event"] == "cordon":
            cordoned.add(h["node"])
        elif h["node"] in WORKERS and h["event"] == "uncordon":
            cordoned.discard(h["node"])
        most = max(most, len(cordoned))
    assert 1 <= most <= 2  # maxUnavailable was 2, then 1


def test_a_second_upgrade_to_the_same_version_changes_nothing(env):
    res = env.kf("upgrade", "--to", "1.35.1", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing to do: every node already runs 1.35.1" in res.stdout
    assert 'next: set spec.kubernetesVersion to "1.35.1"' in res.stdout  # the inventory still says 1.33.5


def test_up_from_the_inventory_still_naming_the_old_version_is_refused_and_changes_nothing(env):
    # the operator has not set kubernetesVersion to 1.35.1 yet: `up` must not downgrade the nodes
    assert env.doc["spec"]["kubernetesVersion"] == "1.33.5"
    before, history = snapshot(env.lab), len(env.sim("state")["history"])
    res = env.kf("up", "--yes")
    assert res.returncode == 7, res.stdout[-2000:] + res.stderr[-2000:]
    err = " ".join(res.stderr.split())
    assert "runs 1.35.1" in err and "spec.kubernetesVersion" in err
    assert snapshot(env.lab) == before and len(env.sim("state")["history"]) == history


def test_up_with_the_inventory_at_the_new_version_plans_zero_steps_and_restarts_nothing(env):
    # the upgrade wrote the minor's runtime config in each node's drain window and recorded it
    env.doc["spec"]["kubernetesVersion"] = "1.35.1"
    env.write_inventory(**{k: v for k, v in env.doc["spec"]["upgrade"].items()
                           if k not in ("drainTimeoutSeconds", "nodeReadyTimeoutSeconds")})
    since = {n: env.lab.exec(n, ["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "containerd"],
                             check=True).stdout for n in (*CONTROL_PLANES, *WORKERS)}
    plan = env.kf("plan", "up")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]
    assert "Plan up: 0 steps" in plan.stdout, plan.stdout[-3000:]
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "nothing to do" in res.stdout
    after = {n: env.lab.exec(n, ["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "containerd"],
                             check=True).stdout for n in (*CONTROL_PLANES, *WORKERS)}
    assert after == since
