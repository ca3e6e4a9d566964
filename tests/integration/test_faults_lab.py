"""CI's share of the fault matrix (issue 10): the seeded 4-point sample over the four etcd workflows
it names (`python -m tests.faults --sample 4 --seed 958594 --workflow etcd-install --workflow
etcd-upgrade --workflow etcd-members-add --workflow etcd-members-remove`; `certs rotate-ca` and `etcd
restore` run by hand): one point of each of `etcd install`, `etcd
upgrade` (always the mixed-version case: Ctrl-C once the first member of a 3.4 -> 3.5 upgrade
restarted on 3.5, then --resume), `etcd members` add and remove; the same four the 5-point sample
drew first (the draw per workflow does not depend on the sample's size), without its extra random
point, to keep CI within its budget. Every point must converge with etcd's quorum never lost, no
acknowledged write lost and no completed step repeated. About 5 minutes of lab time (309 s on
48e1e3a; docs/faults.md)."""

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


def test_a_seeded_sample_of_interrupted_etcd_workflows_converges_without_losing_quorum_writes_or_repeating_steps(tmp_path):
    reason = lab_unavailable()
    if reason:
        skip_or_fail(reason)
    seed = int(os.environ.get("KF_FAULTS_SEED") or CI_SEED)
    sample = 4  # one point per etcd workflow (the mixed-version case for etcd upgrade)
    print(f"\nfault sample seed {seed} (KF_FAULTS_SEED={seed} to replay)")
    # the four etcd workflows by name: the matrix's later workflows (rotate-ca, ...) run by hand
    named = [a for w in CI_WORKFLOWS for a in ("--workflow", w)]
    res = subprocess.run([sys.executable, "-m", "tests.faults", "--sample", str(sample), "--seed", str(seed),
                          *named, "--out", str(tmp_path / "cases")], capture_output=True, text=True, cwd=REPO, timeout=1500)
    out = res.stdout + res.stderr
    print(out[-6000:])
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    m = SUMMARY.match(last)
    assert m, f"no summary line (exit {res.returncode}):\n{out[-3000:]}"
    p, c, q, lost, r = map(int, m.groups())
    assert f"seed {seed}" in res.stdout and "[mixed-version]" in res.stdout
    assert p >= sample, last
    assert (q, lost, r) == (0, 0, 0), f"{last}\n{out[-4000:]}"
    assert c == p, f"{last}\n{out[-4000:]}"
    assert res.returncode == 0, out[-3000:]
