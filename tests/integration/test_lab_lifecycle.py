"""Machines stop and start again (fresh or persistent disks), labs of up to 8 machines boot, and
nothing a lab started survives its teardown, also after a crash."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.lab import claims, network
from tests.lab.cleanup import leftovers
from tests.lab.lab import Lab
from tests.lab.layout import layout
from tests.lab.paths import LabId
from tests.lab.procs import Proc, start_time

pytestmark = pytest.mark.lab


def _host_key(lab, name: str) -> str:
    return next(line.split()[2] for line in lab.known_hosts.read_text().splitlines()
                if line.split()[:2] == [lab.address(name), "ssh-ed25519"])


def _ssh(lab, name: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(lab.ssh_argv(name, command), capture_output=True, text=True, timeout=30)


def _assert_gone(index: int, pids: list[int]) -> None:
    lab_id = LabId(index)
    assert not network.bridge_exists(lab_id.bridge)
    assert not lab_id.run_dir.exists()
    for pid in pids:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state == "Z", f"pid {pid} still running (state {state})"


@pytest.fixture(scope="module")
def pair(lab_factory):
    # with no way out (egress=False): every boot of a machine, power cuts and reboots too, gets it again
    return lab_factory([("fresh", ["control-plane"]), ("keeper", ["worker"])], persistent=["keeper"], with_mirror=False,
                       egress=False)


def _cut(lab, name: str) -> bool:
    return network.egress_cut(lab.leader_pid(name), lab.id.gateway)


def test_a_hard_stopped_machine_stops_answering_and_the_others_keep_running(pair):
    pair.stop_machine("fresh")
    try:
        assert not pair.running("fresh")
        assert network.ssh_banner(pair.address("fresh")) is None
        assert _ssh(pair, "keeper", "true").returncode == 0
    finally:
        pair.start_machine("fresh")


def test_a_volatile_machine_restarts_with_a_fresh_disk_and_new_host_keys(pair):
    assert _ssh(pair, "fresh", "touch /home/kube/marker").returncode == 0
    before = _host_key(pair, "fresh")
    pair.stop_machine("fresh")
    pair.start_machine("fresh")
    assert _host_key(pair, "fresh") != before  # known_hosts was rescanned, strict ssh still works
    res = _ssh(pair, "fresh", "test -e /home/kube/marker && echo kept || echo gone")
    assert res.stdout.strip() == "gone", res.stderr


def test_a_persistent_machine_keeps_its_files_and_host_keys_across_a_power_cut(pair):
    assert _ssh(pair, "keeper", "echo hello > /home/kube/marker").returncode == 0
    before = _host_key(pair, "keeper")
    pair.stop_machine("keeper")
    pair.start_machine("keeper")
    assert _host_key(pair, "keeper") == before
    assert _ssh(pair, "keeper", "cat /home/kube/marker").stdout.strip() == "hello"
    assert _cut(pair, "keeper")  # a new boot, a new network namespace: cut again


def test_a_persistent_machine_reboots_from_inside_and_keeps_its_files(pair):
    assert _ssh(pair, "keeper", "echo again > /home/kube/reboot-marker").returncode == 0
    boot_id = pair.exec("keeper", ["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout
    pair.reboot_machine("keeper")
    assert pair.exec("keeper", ["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout != boot_id
    assert _ssh(pair, "keeper", "cat /home/kube/reboot-marker").stdout.strip() == "again"
    uuid = pair.exec("keeper", ["cat", "/sys/class/dmi/id/product_uuid"], check=True).stdout.strip()
    assert uuid == pair.machines["keeper"].product_uuid
    assert _cut(pair, "keeper") and _cut(pair, "fresh")


def test_a_saved_disk_comes_back_on_its_layers_and_a_disk_saved_on_top_of_it_keeps_both(pair):
    from tests.lab import disks, machine

    def files() -> list[str]:
        script = 'for f in /home/kube/one /home/kube/two /etc/issue.net; do [ -e $f ] && head -c 5 $f || echo gone; done'
        return pair.exec("keeper", ["sh", "-c", script], check=True).stdout.split()

    assert _ssh(pair, "keeper", "echo one > /home/kube/one && sudo rm /etc/issue.net").returncode == 0
    disks.save(pair, "one")  # the persistent machines: keeper alone
    assert _ssh(pair, "keeper", "echo two > /home/kube/two").returncode == 0
    disks.save(pair, "two")  # while running on "one": a layer on top of it
    key = _host_key(pair, "keeper")
    assert _ssh(pair, "keeper", "rm /home/kube/one && echo later > /home/kube/two").returncode == 0
    disks.restore(pair, "one")
    assert files() == ["one", "gone", "gone"]  # the root filesystem's issue.net still hidden by the layer
    disks.restore(pair, "two")
    assert files() == ["one", "two", "gone"]
    assert machine.lower_layers(pair.run_dir / "machines" / "keeper") == disks.layers(pair, "two", "keeper")
    assert len(disks.layers(pair, "two", "keeper")) == 2 and _host_key(pair, "keeper") == key
    assert _cut(pair, "keeper")


@pytest.mark.slow
def test_eight_machines_boot_and_answer_ssh_with_their_own_keys(lab_factory):
    big = lab_factory(8, with_mirror=False)
    try:
        keys = {line.split()[2] for line in big.known_hosts.read_text().splitlines() if "ssh-ed25519" in line}
        assert len(keys) == 8
        for name in big.machines:
            assert _ssh(big, name, "sudo -n hostname").stdout.strip() == name
    finally:
        big.down()  # give the memory back to the rest of the session now
    assert not network.bridge_exists(big.id.bridge)


@pytest.mark.slow
@pytest.mark.by_hand  # 15 s of the lab's own plumbing; every lab test's teardown is one such cycle, and
# `tests.lab down --all` after pytest in .ci/run reports what any of them left
def test_five_up_down_cycles_leave_nothing_behind():
    index, fd = claims.claim()
    try:
        for _ in range(5):
            lab = Lab(layout(2), index=index, log=lambda *_: None).up()
            pids = [m.proc.pid for m in lab.machines.values()] + [lab.mirror_proc.pid]
            assert all(lab.running(n) for n in lab.machines)
            lab.down()
            _assert_gone(index, pids)
    finally:
        claims.release(fd)


def test_down_all_removes_what_a_crashed_run_left_and_spares_labs_in_use(lab):
    gone = subprocess.Popen(["true"])
    dead_owner = Proc(gone.pid, start_time(gone.pid))
    gone.wait()
    index, fd = claims.claim()
    crashed = Lab(layout(1), index=index, with_mirror=False, log=lambda *_: None, owner=dead_owner).up()
    pids = [m.proc.pid for m in crashed.machines.values()]
    claims.release(fd)  # the "crashed" owner is gone: its lock is free, its machines still run
    # swept alone so labs of other sessions on this runner (and a hand-started lab0) are untouched;
    # the session's own lab is offered too, and must be spared because this process holds its lock
    argv = [sys.executable, "-m", "tests.lab", "down", "--all", "--only", crashed.id.name, "--only", lab.id.name]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    _assert_gone(index, pids)
    # the session's own lab is locked by this process and was left running
    assert all(lab.running(n) for n in lab.machines)
    assert network.bridge_exists(lab.id.bridge)
    assert lab.id.name in leftovers()["run_dirs"]


def test_down_all_leaves_a_lab_booted_by_hand_running_unless_forced():
    index, fd = claims.claim()
    claims.release(fd)  # booted "by hand": no lock, no owner
    by_hand = Lab(layout(1), index=index, with_mirror=False, log=lambda *_: None).up()
    try:
        sweep = [sys.executable, "-m", "tests.lab", "down", "--all", "--only", by_hand.id.name]
        res = subprocess.run(sweep, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert by_hand.running("lab-1") and "booted by hand" in res.stdout
        res = subprocess.run(sweep + ["--force"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert not by_hand.running("lab-1")
        assert not network.bridge_exists(by_hand.id.bridge)
    finally:
        by_hand.down()
