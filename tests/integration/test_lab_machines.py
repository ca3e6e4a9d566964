"""The lab's machines are real: systemd as PID 1, their own hostnames, host keys and identities, a
login user reached by the real OpenSSH client with strict host-key checking, apt fed by the mirror."""

from __future__ import annotations

import subprocess
import time

import pytest
from ruamel.yaml import YAML

from tests.lab.mirror import etcd_versions

pytestmark = pytest.mark.lab


def _wait_system_state(lab, name: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = lab.exec(name, ["systemctl", "is-system-running"]).stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.2)
    return state


def test_every_machine_boots_with_systemd_as_pid_1(lab):
    for name in lab.machines:
        assert lab.exec(name, ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
        state = _wait_system_state(lab, name)
        failed = lab.exec(name, ["systemctl", "--failed", "--no-legend"]).stdout
        assert state in ("running", "degraded"), f"{name}: {state}; failed units:\n{failed}"


def test_machines_have_distinct_hostnames_machine_ids_and_product_uuids(lab):
    seen = {"hostname": set(), "machine-id": set(), "product_uuid": set()}
    for name in lab.machines:
        hostname = lab.exec(name, ["hostname"], check=True).stdout.strip()
        assert hostname == name
        seen["hostname"].add(hostname)
        seen["machine-id"].add(lab.exec(name, ["cat", "/etc/machine-id"], check=True).stdout.strip())
        seen["product_uuid"].add(lab.exec(name, ["cat", "/sys/class/dmi/id/product_uuid"], check=True).stdout.strip())
    for what, values in seen.items():
        assert len(values) == len(lab.machines), f"{what} repeats across machines: {values}"


def test_every_machine_has_its_own_host_keys_in_known_hosts(lab):
    lines = [line.split() for line in lab.known_hosts.read_text().splitlines()]
    by_type: dict[str, set[str]] = {}
    for _addr, keytype, key in lines:
        by_type.setdefault(keytype, set()).add(key)
    assert set(by_type) == {"ssh-ed25519", "ecdsa-sha2-nistp256"}  # no slow RSA keys
    assert {addr for addr, _, _ in lines} == {m.address for m in lab.machines.values()}
    assert all(len(keys) == len(lab.machines) for keys in by_type.values())
    for m in lab.machines.values():  # the key scanned is the key the machine holds
        pub = lab.exec(m.name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True).stdout.split()[1]
        assert [m.address, "ssh-ed25519", pub] in lines


def test_the_kube_user_logs_in_with_the_lab_key_and_has_passwordless_sudo(lab):
    for name in lab.machines:
        res = subprocess.run(lab.ssh_argv(name, "sudo -n true && id -un && hostname"), capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["kube", name]


def test_ssh_refuses_a_machine_whose_host_key_is_not_known(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    argv = [a.replace(str(lab.known_hosts), str(empty)) for a in lab.ssh_argv("lab-1", "true")]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert res.returncode == 255
    assert "Host key verification failed" in res.stderr


def test_apt_inside_has_no_sources_until_one_is_configured(lab):
    assert lab.exec("lab-1", ["sh", "-c", "cat /etc/apt/sources.list; ls /etc/apt/sources.list.d"], check=True).stdout.strip() == ""
    policy = lab.exec("lab-1", ["apt-cache", "policy", "etcd-client"]).stdout
    assert "Candidate" not in policy


def test_apt_inside_installs_a_package_from_the_lab_mirror(lab):
    source = f"deb [trusted=yes] {lab.mirror_url}/debian/ ./\n"
    name = "lab-3"
    try:
        lab.exec(name, ["tee", "/etc/apt/sources.list.d/lab-mirror.list"], input=source, check=True)
        lab.exec(name, ["apt-get", "update", "-q"], check=True, timeout=120)
        lab.exec(name, ["apt-get", "install", "-y", "-q", "etcd-client"], check=True, timeout=300)
        out = lab.exec(name, ["etcdctl", "version"], check=True).stdout
        # apt picks the newest etcd the mirror offers (it carries several, for etcd upgrades)
        newest = etcd_versions(lab.run_dir / "mirror")[-1]
        assert f"etcdctl version: {newest}" in out
    finally:
        # the session lab stays bare for the tests that install packages through kubeforge
        lab.exec(name, ["apt-get", "purge", "-y", "-q", "etcd-client"], timeout=120)
        lab.exec(name, ["sh", "-c", "rm -f /etc/apt/sources.list.d/lab-mirror.list; rm -rf /var/lib/apt/lists/*"])


def test_the_written_inventory_describes_the_booted_machines(lab):
    doc = YAML(typ="safe").load(lab.inventory_path.read_text())
    spec = doc["spec"]
    assert [(h["name"], h["address"]) for h in spec["hosts"]] == [(m.name, m.address) for m in lab.machines.values()]
    assert spec["ssh"]["user"] == "kube"
    assert spec["ssh"]["knownHosts"] == str(lab.known_hosts)
    assert spec["ssh"]["identityFile"] == str(lab.key_path)
    assert spec["packages"] == {"source": "mirror", "mirrorURL": lab.mirror_url}
    assert oct(lab.key_path.stat().st_mode & 0o777) == "0o600"


def test_kubeforge_validate_accepts_the_written_inventory(lab):
    res = subprocess.run(["kubeforge", "validate", "-i", str(lab.inventory_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_machines_can_be_given_the_same_product_uuid(lab):
    original = lab.machines["lab-2"].product_uuid
    shared = lab.machines["lab-1"].product_uuid
    try:
        lab.set_product_uuid("lab-2", shared)
        values = {n: lab.exec(n, ["cat", "/sys/class/dmi/id/product_uuid"], check=True).stdout.strip() for n in ("lab-1", "lab-2")}
        assert values == {"lab-1": shared, "lab-2": shared}
    finally:
        lab.set_product_uuid("lab-2", original)
    assert lab.exec("lab-2", ["cat", "/sys/class/dmi/id/product_uuid"], check=True).stdout.strip() == original


def test_machines_reach_each_other_and_the_runner_over_the_bridge(lab):
    res = lab.exec("lab-1", ["ping", "-c", "1", "-W", "2", lab.address("lab-2")])
    assert res.returncode == 0, res.stdout + res.stderr
    res = lab.exec("lab-2", ["getent", "hosts", "lab-3"])
    assert res.stdout.split()[0] == lab.address("lab-3")
