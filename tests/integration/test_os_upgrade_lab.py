"""`kubeforge os upgrade` and `kubeforge node replace` of a worker on one lab.

`os upgrade` on real machines that really reboot (persistent disks; `systemctl reboot`
restarts the machine from its disk): the lab mirror's test package 1.0 is installed on cp-1, cp-2 and
worker-1, the mirror offers 1.1, whose postinst asks for a reboot. The run upgrades it, reboots
exactly those three (etcd-1 and lb-1 have nothing asking), one control plane at a time, with the API
answering through the haproxy endpoint throughout.

Then worker-2 (a volatile disk) is powered off and comes back blank at its address with a new host
key: `node replace worker-2` deletes its old Node and joins the new machine.

Heavy (its own lab, three reboots): by hand, figures in docs/node.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.polling import while_polling
from tests.integration.test_endpoint_haproxy_lab import readyz_through_vip

pytestmark = [pytest.mark.lab, pytest.mark.by_hand, pytest.mark.timeout(1500)]

LAYOUT = [("lb-1", ("load-balancer",)), ("etcd-1", ("etcd",)), ("cp-1", ("control-plane",)),
          ("cp-2", ("control-plane",)), ("worker-1", ("worker",)), ("worker-2", ("worker",))]
PATCHED = ("cp-1", "cp-2", "worker-1")  # the test package installed: they will need a reboot
PERSISTENT = ("lb-1", "etcd-1", "cp-1", "cp-2", "worker-1")  # worker-2's disk is volatile: replaced blank
MACHINES = (*PERSISTENT, "worker-2")
REPO = Path(__file__).resolve().parents[2]
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]


def kf(d: Path, inventory: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(inventory)], capture_output=True,
                          text=True, timeout=timeout, cwd=d, check=False, env=env)


def boot_id(lab, name: str) -> str:
    return lab.exec(name, ["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout.strip()


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory):
    lab = lab_factory(LAYOUT, endpoint_mode="haproxy", persistent=PERSISTENT)
    d = tmp_path_factory.mktemp("os-upgrade")
    inventory = lab.write_inventory(d / "inventory.yaml")
    up = kf(d, inventory, "up", "--yes")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    return lab, d, inventory


def node(lab, name: str) -> dict:
    return json.loads(lab.exec("cp-1", [*KUBECTL, "get", "node", name, "-o", "json"], check=True).stdout)


def test_os_upgrade_reboots_exactly_the_hosts_that_need_it_one_control_plane_at_a_time_api_answering(env):
    lab, tmp_path, inventory = env
    vip = YAML(typ="safe").load(inventory.read_text())["spec"]["controlPlaneEndpoint"]["host"]
    for name in MACHINES:  # the site's update repository, as an operator's security mirror
        lab.exec(name, ["sh", "-c", f"echo 'deb [trusted=yes] {lab.mirror_url}/lab-updates/ ./' "
                                    "> /etc/apt/sources.list.d/lab-updates.list && apt-get update -q >/dev/null"], check=True)
    for name in PATCHED:
        res = lab.exec(name, ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                              "kubeforge-lab-patch=1.0-1"], timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert lab.exec(name, ["test", "-e", "/var/run/reboot-required"]).returncode != 0  # 1.0 asks for nothing

    dry = kf(tmp_path, inventory, "os", "upgrade", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    rows = {r["host"]: r for r in json.loads(dry.stdout)["hosts"]}
    for name in PATCHED:
        assert [(u["name"], u["installed"], u["candidate"]) for u in rows[name]["upgrades"]] == [
            ("kubeforge-lab-patch", "1.0-1", "1.1-1")], rows[name]
        assert rows[name]["would_reboot"].startswith("only if a package asks")
    for name in ("lb-1", "etcd-1", "worker-2"):
        assert rows[name]["upgrades"] == [] and rows[name]["would_reboot"] == "no", rows[name]
    assert all(boot_id(lab, n) for n in MACHINES)
    before = {n: boot_id(lab, n) for n in MACHINES}

    started = time.monotonic()
    res, polls, failures = while_polling(lambda: None if readyz_through_vip(vip) else "no answer",
                                         lambda: kf(tmp_path, inventory, "os", "upgrade", "--yes"), 0.5)
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    after = {n: boot_id(lab, n) for n in MACHINES}
    rebooted = sorted(n for n in MACHINES if after[n] != before[n])
    print(f"os upgrade: {took:.1f}s, rebooted {rebooted}, API polls {polls}, failed {len(failures)}")
    assert rebooted == sorted(PATCHED)
    assert polls > 10 and failures == [], failures[:3]
    for name in PATCHED:
        assert lab.exec(name, ["cat", "/usr/share/kubeforge-lab-patch/VERSION"]).stdout.strip() == "1.1"
        assert lab.exec(name, ["test", "-e", "/var/run/reboot-required"]).returncode != 0
        assert lab.exec(name, ["test", "-e", "/var/lib/kubeforge/os-upgrade-reboot"]).returncode != 0
    nodes = json.loads(lab.exec("cp-1", [*KUBECTL, "get", "nodes", "-o", "json"], check=True).stdout)["items"]
    for n in nodes:
        ready = [c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"] and not n["spec"].get("unschedulable"), n["metadata"]["name"]
    held = lab.exec("cp-1", ["apt-mark", "showhold"]).stdout.split()
    assert {"kubeadm", "kubelet", "kubectl"} <= set(held)

    # one control plane at a time: cp-1's reboot window closed before cp-2's opened
    journal = max((tmp_path / ".kubeforge").glob("*/runs/*-os-upgrade/journal.jsonl"))
    ends = [json.loads(line) for line in journal.read_text().splitlines()]
    order = [r["step"] for r in ends if r.get("type") == "step"]
    assert order.index("RebootControlPlanes/cp-1/unmark") < order.index("RebootControlPlanes/cp-2/mark"), order

    again = kf(tmp_path, inventory, "os", "upgrade", "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert {n: boot_id(lab, n) for n in MACHINES} == after  # nothing left to do: no reboot


def test_node_replace_joins_a_blank_machine_at_a_dead_workers_address_in_place_of_its_node(env):
    lab, d, inventory = env
    # a label only the old Node object carries: the simulator's Nodes have no uid
    lab.exec("cp-1", [*KUBECTL, "label", "node", "worker-2", "kubeforge-test/old-machine=yes"], check=True)
    assert node(lab, "worker-2")["metadata"]["labels"].get("kubeforge-test/old-machine") == "yes"
    known = lab.known_hosts.read_text()
    lab.stop_machine("worker-2")  # power off
    lab.start_machine("worker-2")  # volatile disk: blank, new host keys
    lab.known_hosts.write_text(known)  # the operator's known_hosts has the dead machine's key
    changed = kf(d, inventory, "node", "replace", "worker-2", "--yes")
    assert changed.returncode == 5 and "--accept-new-host-key" in changed.stderr, changed.stderr[-2000:]
    started = time.monotonic()
    res = kf(d, inventory, "node", "replace", "worker-2", "--yes", "--accept-new-host-key")
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    print(f"node replace worker-2: {took:.1f}s")
    new = node(lab, "worker-2")
    assert "kubeforge-test/old-machine" not in new["metadata"]["labels"]  # old Node deleted, the new one registered
    assert [c["status"] for c in new["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    assert lab.exec("worker-2", ["test", "-f", "/etc/kubernetes/kubelet.conf"]).returncode == 0
    again = kf(d, inventory, "node", "replace", "worker-2", "--yes")
    assert again.returncode == 7 and "its node is Ready" in again.stderr, again.stderr[-2000:]
