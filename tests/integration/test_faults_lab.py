"""CI's share of the fault matrix (issue 10): a seeded sample with one point of every workflow the
matrix covers, one test per lab.

- The etcd lab: `python -m tests.faults --sample 6 --seed 958594` naming its six workflows: `etcd
  install`, `etcd upgrade` (always the mixed-version case: Ctrl-C once the first member of a 3.4 ->
  3.5 upgrade restarted on 3.5, then --resume), `etcd members` add and remove, `certs rotate-ca --ca
  etcd` and `etcd restore`. The first four points are the ones CI drew when it named those four
  alone (a workflow's draw never depends on the workflows after it).
- The Kubernetes lab (2 control planes, 2 workers, haproxy and keepalived in front): `--sample 4`
  naming `up` from bare machines, `upgrade` one minor, `reset` and `up` adding a control plane and a
  worker.

Every point must converge (the same end state as the uninterrupted reference run, and the commands
that must then find nothing to do find nothing), with etcd's quorum never lost, no acknowledged
write lost and no completed step repeated. The full matrix and the issue's bar run by hand; their
figures and this sample's are in docs/faults.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.faults.harness import REPO
from tests.faults.workflows import CI_WORKFLOWS
from tests.lab.fixtures import lab_unavailable
from tests.need import skip_or_fail

pytestmark = pytest.mark.lab

# CI draws the same sample every run, so a red run is a change of kubeforge's, not of the draw; any
# other seed (KF_FAULTS_SEED) replays another sample, and the full matrix runs by hand (docs/faults.md).
CI_SEED = 958594

SUMMARY = re.compile(r"^faults: (\d+) points, (\d+) converged, (\d+) quorum losses, (\d+) lost writes, (\d+) repeated steps$")


def _sample(shape: str, tmp_path) -> str:
    """Run one point of every workflow of ``shape``'s lab; return the harness's output after
    checking its summary line."""
    reason = lab_unavailable()
    if reason:
        skip_or_fail(reason)
    seed = int(os.environ.get("KF_FAULTS_SEED") or CI_SEED)
    workflows = CI_WORKFLOWS[shape]
    print(f"\nfault sample of the {shape} lab, seed {seed} (KF_FAULTS_SEED={seed} to replay)")
    named = [a for w in workflows for a in ("--workflow", w)]
    res = subprocess.run([sys.executable, "-m", "tests.faults", "--sample", str(len(workflows)), "--seed", str(seed),
                          *named, "--out", str(tmp_path / "cases")], capture_output=True, text=True, cwd=REPO, timeout=1500)
    out = res.stdout + res.stderr
    print(out[-6000:])
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    m = SUMMARY.match(last)
    assert m, f"no summary line (exit {res.returncode}):\n{out[-3000:]}"
    p, c, q, lost, r = map(int, m.groups())
    assert f"seed {seed}" in res.stdout
    assert p == len(workflows), last  # one point per workflow, no more
    ran = {line.split("] ", 1)[1].split(" ", 1)[0] for line in res.stdout.splitlines() if re.match(r"^\[\d+/\d+\] ", line)}
    assert ran == set(workflows), f"points ran for {sorted(ran)}, not one of each of {workflows}"
    assert (q, lost, r) == (0, 0, 0), f"{last}\n{out[-4000:]}"
    assert c == p, f"{last}\n{out[-4000:]}"
    assert res.returncode == 0, out[-3000:]
    return res.stdout


def test_a_seeded_sample_of_interrupted_etcd_workflows_converges_without_losing_quorum_writes_or_repeating_steps(tmp_path):
    out = _sample("etcd", tmp_path)
    assert "[mixed-version]" in out


def test_a_seeded_sample_of_interrupted_kubernetes_workflows_converges_without_losing_quorum_writes_or_repeating_steps(tmp_path):
    _sample("k8s", tmp_path)
