"""What a machine that lost power during apt leaves for the next etcd install or upgrade step
(issue 10's fault matrix): kubeforge's own policy-rc.d and a dpkg run cut short. The install script
runs for real under bash; apt-get, apt-cache, dpkg, dpkg-query and systemctl are stand-ins on PATH
that record their calls (no package is installed on this machine), and policy-rc.d's path is
pointed into tmp_path."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.upgrade_checks import POLICY_RC, POLICY_RC_MARKER
from kubeforge.transport.script import script_for
from tests.factories import make_cluster

TOOLS = {
    "apt-get": 'echo "apt-get $*" >> "$CALLS"',
    "apt-cache": 'echo "$2 | $WANT-1 | http://mirror trixie/main amd64 Packages"',
    "dpkg": 'echo "dpkg $*" >> "$CALLS"; [ "$1" = --audit ] && [ -n "$AUDIT" ] && echo "$AUDIT"; exit 0',
    "dpkg-query": '[ -n "$INSTALLED" ] && printf "ii |3.4.23-4"; exit 0',
    "systemctl": 'echo "systemctl $*" >> "$CALLS"',
}


def _install(tmp_path, *, policy: str | None, installed: bool = False, audit: str = "") -> tuple[str, str | None]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in TOOLS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    rc_path = tmp_path / "policy-rc.d"
    if policy is not None:
        rc_path.write_text(policy)
    calls = tmp_path / "calls"
    calls.write_text("")
    cluster = make_cluster(tmp_path)
    command = cmd.install_packages(cluster)
    command = replace(command, script=command.script.replace(POLICY_RC, str(rc_path)))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "AUDIT": audit,
           "INSTALLED": "1" if installed else "", "WANT": str(cluster.etcd.version)}
    res = subprocess.run(["bash", "-s"], input=script_for(command), text=True, env=env, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return calls.read_text(), rc_path.read_text() if rc_path.exists() else None


def test_kubeforges_policy_rc_left_by_a_power_loss_is_removed_by_the_next_install(tmp_path):
    calls, left = _install(tmp_path, policy=f"#!/bin/sh\n# {POLICY_RC_MARKER} while etcd is installed\nexit 101\n")
    assert left is None
    assert "apt-get install" in calls


def test_an_operators_own_policy_rc_is_put_back_after_the_install(tmp_path):
    mine = "#!/bin/sh\n# the operator's\nexit 0\n"
    _, left = _install(tmp_path, policy=mine)
    assert left == mine


def test_a_dpkg_run_cut_short_is_finished_before_apt_installs(tmp_path):
    calls, _ = _install(tmp_path, policy=None, audit="etcd-server: half-configured")
    lines = calls.splitlines()
    assert "dpkg --configure -a" in lines
    assert lines.index("dpkg --configure -a") < next(i for i, c in enumerate(lines) if c.startswith("apt-get install"))


def test_a_fresh_install_leaves_debians_unit_disabled_but_an_upgrade_keeps_it_as_it_was(tmp_path):
    fresh, _ = _install(tmp_path / "fresh", policy=None)
    assert "systemctl disable etcd" in fresh.splitlines()
    again, _ = _install(tmp_path / "again", policy=None, installed=True)
    assert "systemctl disable etcd" not in again.splitlines()


def test_the_install_step_is_not_skipped_while_an_interrupted_install_left_traces(tmp_path):
    cluster = make_cluster(tmp_path)
    (step,) = cmd.install_steps(cluster, cluster.etcd_members[0])
    assert step.unless.script.startswith(cmd.installed_guard(cluster).script)
    assert POLICY_RC_MARKER in step.unless.script and "dpkg --audit" in step.unless.script
