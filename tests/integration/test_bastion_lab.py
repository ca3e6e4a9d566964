"""`kubeforge up` where the machines are reachable only through a bastion: every machine but cp-1
refuses SSH from the runner (iptables in its network namespace), and the operator's ssh config says
``ProxyJump <cp-1>`` for them, as a site with a jump host would. OpenSSH's own client is checked
first with the same config, so the test states the network really is that way."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from tests.lab import network

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

ROLES = [("cp-1", ("control-plane", "etcd")), ("worker-1", ("worker",)), ("worker-2", ("worker",))]  # stacked etcd
BASTION = "cp-1"
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]


@pytest.fixture(scope="module")
def site(lab_factory, tmp_path_factory):
    lab = lab_factory(ROLES)
    d = tmp_path_factory.mktemp("bastion-lab")
    inv = lab.write_inventory(d / "lab.yaml")
    doc = YAML(typ="safe").load(inv.read_text())
    behind = [n for n in lab.machines if n != BASTION]
    config = d / "ssh_config"
    config.write_text(
        "".join(f"Host {lab.address(n)}\n  ProxyJump {lab.address(BASTION)}\n" for n in behind)
        + f"Host *\n  User kube\n  IdentityFile {lab.key_path}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {lab.known_hosts}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
    )
    doc["spec"]["ssh"]["sshConfig"] = str(config)
    inventory = d / "inventory.yaml"
    with inventory.open("w") as f:
        YAML().dump(doc, f)
    for n in behind:
        network.refuse_ssh_from(lab.leader_pid(n), lab.id.gateway)
    yield lab, d, inventory, config, behind
    for n in behind:
        if lab.running(n):
            network.allow_ssh_from(lab.leader_pid(n), lab.id.gateway)


def test_the_machines_behind_the_bastion_refuse_the_runner_and_openssh_reaches_them_through_it(site):
    lab, _, _, config, behind = site
    for n in behind:
        with pytest.raises(OSError):
            socket.create_connection((lab.address(n), 22), timeout=5).close()
        res = subprocess.run(["ssh", "-F", str(config), lab.address(n), "hostname"], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0 and res.stdout.strip() == n, res.stderr


def test_up_runs_through_the_bastion_to_every_node_ready(site):
    lab, d, inventory, _, behind = site
    res = subprocess.run([sys.executable, "-m", "kubeforge", "up", "--yes", "-i", str(inventory)], cwd=d,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    state = json.loads(lab.exec(BASTION, [*KUBECTL, "sim", "state"], check=True).stdout)
    assert {n for n, v in state["nodes"].items() if v.get("ready")} == set(lab.machines)
    log = max((d / ".kubeforge").glob("*/runs/*-up/kubeforge.log"), key=lambda p: p.stat().st_mtime).read_text()
    for n in behind:
        assert f"via {lab.address(BASTION)}:22" in log and f"[{n}] connected to kube@{lab.address(n)}:22" in log
