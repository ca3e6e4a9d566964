"""Every package install of kubeforge's (up's, the upgrade's, etcd's) is made of the same apt
fragments (kubeforge.plan.apt), so each one survives what a power loss during apt leaves behind.
The scripts run for real under bash with apt-get, dpkg and friends as recording stand-ins on PATH
(tests/unit/test_etcd_interrupted_install.py's), policy-rc.d pointed into tmp_path."""

from __future__ import annotations

import os
import subprocess

import pytest

from kubeforge.model.versions import parse_kube
from kubeforge.plan.apt import POLICY_RC, POLICY_RC_MARKER
from kubeforge.plan.etcd import commands as etcd_commands
from kubeforge.plan.up.install_packages import install_script
from kubeforge.plan.upgrade.commands import install_held
from kubeforge.transport.base import Command
from kubeforge.transport.script import script_for
from tests.factories import make_cluster
from tests.unit.test_etcd_interrupted_install import TOOLS

INSTALLERS = ("up", "upgrade", "etcd")


def _script(which: str, cluster) -> str:
    if which == "up":
        return install_script({"kubeadm": "1.35.1", "containerd": None}, ["kubeadm"])
    if which == "up-etcd":  # a dedicated etcd member of an external-etcd cluster, from a mirror
        return install_script({"etcd-server": str(cluster.etcd.version), "etcd-client": str(cluster.etcd.version)}, [])
    if which == "upgrade":
        return install_held("cp-1", ("kubelet", "kubectl"), parse_kube("1.35.1"), key="k").command.script
    return etcd_commands.install_packages(cluster).script


def _run(which: str, tmp_path, *, policy: str | None = None, audit: str = "",
         installed: bool = False) -> tuple[list[str], str | None]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in TOOLS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "apt-mark").write_text('#!/bin/sh\necho "apt-mark $*" >> "$CALLS"\n')
    (bin_dir / "apt-mark").chmod(0o755)
    rc_path = tmp_path / "policy-rc.d"
    if policy is not None:
        rc_path.write_text(policy)
    calls = tmp_path / "calls"
    calls.write_text("")
    cluster = make_cluster(tmp_path / "inv")
    script = _script(which, cluster).replace(POLICY_RC, str(rc_path))
    # what apt's maintainer scripts would see in the middle of the install
    script = script.replace("apt-get install", f'cp {rc_path} "$CALLS.during"; apt-get install', 1)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "AUDIT": audit,
           "INSTALLED": "1" if installed else "", "WANT": str(cluster.etcd.version)}
    res = subprocess.run(["bash", "-s"], input=script_for(Command(script=script, sudo=False)), text=True, env=env,
                         capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    during = (tmp_path / "calls.during").read_text()
    assert POLICY_RC_MARKER in during and "exit 101" in during, "service starts must be forbidden while apt runs"
    return calls.read_text().splitlines(), rc_path.read_text() if rc_path.exists() else None


@pytest.mark.parametrize("which", INSTALLERS)
def test_kubeforges_policy_rc_left_by_a_power_loss_is_removed_by_every_installer(which, tmp_path):
    calls, left = _run(which, tmp_path, policy=f"#!/bin/sh\n# {POLICY_RC_MARKER} while x\nexit 101\n")
    assert left is None
    assert any(c.startswith("apt-get install") for c in calls)


@pytest.mark.parametrize("which", INSTALLERS)
def test_an_operators_own_policy_rc_is_put_back_by_every_installer(which, tmp_path):
    mine = "#!/bin/sh\n# the operator's\nexit 0\n"
    _, left = _run(which, tmp_path, policy=mine)
    assert left == mine


@pytest.mark.parametrize("which", INSTALLERS)
def test_every_installer_finishes_a_dpkg_run_cut_short_before_installing(which, tmp_path):
    calls, _ = _run(which, tmp_path, audit="kubelet: half-configured")
    assert "dpkg --configure -a" in calls
    assert calls.index("dpkg --configure -a") < next(i for i, c in enumerate(calls) if c.startswith("apt-get install"))


@pytest.mark.parametrize("which", ["up", "upgrade"])
def test_held_packages_are_unheld_for_the_install_and_held_again_after(which, tmp_path):
    calls, _ = _run(which, tmp_path)
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get install"))
    assert [c for c in calls[:install] if c.startswith("apt-mark unhold")]
    assert [c for c in calls[install:] if c.startswith("apt-mark hold")]


@pytest.mark.parametrize("which", ["up-etcd", "etcd"])
def test_a_first_etcd_install_is_left_disabled_at_boot_by_up_and_by_the_etcd_workflow(which, tmp_path):
    """Debian's postinst enables etcd.service: a member that lost power after apt and before
    kubeforge's unit was in place booted a single-member etcd of its own, listening on loopback,
    and the resumed `up` failed its connectivity preflight on 2379/2380 (docs/faults.md)."""
    calls, _ = _run(which, tmp_path)
    install = next(i for i, c in enumerate(calls) if c.startswith("apt-get install"))
    assert "systemctl disable etcd" in calls[install:]


@pytest.mark.parametrize("which", ["up-etcd", "etcd"])
def test_an_etcd_installed_before_keeps_its_enabled_at_boot_state(which, tmp_path):
    calls, _ = _run(which, tmp_path, installed=True)
    assert not [c for c in calls if c.startswith("systemctl disable")]


def test_up_disables_nothing_at_boot_on_a_host_without_etcds_server(tmp_path):
    calls, _ = _run("up", tmp_path)
    assert not [c for c in calls if c.startswith("systemctl disable")]
