"""The etcd lifecycle on real machines: Debian's etcd 3.4 from the lab mirror, installed, backed up,
restored and resized by kubeforge over real SSH, checked with the real etcdctl on the members."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.lab

ETCD_PKI = "/etc/etcd/pki"
TLS = [f"--cacert={ETCD_PKI}/ca.crt", f"--cert={ETCD_PKI}/healthcheck-client.crt",
       f"--key={ETCD_PKI}/healthcheck-client.key"]


def inventory_with(lab, path: Path, etcd_hosts: list[str]) -> Path:
    """The lab's inventory with only ``etcd_hosts`` (and the control plane) in it."""
    yaml = YAML()
    doc = yaml.load(lab.inventory_path.read_text())
    hosts = []
    for h in doc["spec"]["hosts"]:
        if h["name"] in etcd_hosts or "etcd" not in h["roles"]:
            hosts.append(h)
        elif "control-plane" in h["roles"]:  # stays as the control plane the inventory needs
            h["roles"] = [r for r in h["roles"] if r != "etcd"]
            hosts.append(h)
    doc["spec"]["hosts"] = hosts
    doc["spec"]["etcd"]["backup"] = {"keep": 3}
    with path.open("w") as f:
        yaml.dump(doc, f)
    return path


def kf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, timeout=timeout)


def etcdctl(lab, on: str, *args: str, endpoints: str | None = None, tls: bool = True) -> subprocess.CompletedProcess:
    ep = endpoints or f"https://{lab.address(on)}:2379"
    argv = ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={ep}", "--dial-timeout=3s", "--command-timeout=10s"]
    return lab.exec(on, [*argv, *(TLS if tls else []), *args])


@pytest.fixture(scope="module")
def elab(lab_factory):
    # etcd-1 doubles as the control plane the inventory needs
    return lab_factory([("etcd-1", ("control-plane", "etcd")), ("etcd-2", ("etcd",)), ("etcd-3", ("etcd",))])


INSTALL_OUTCOME: dict = {}


def power_loss_during(lab, machine: str, when: list[str], *args: str) -> tuple[int, str, str]:
    """Run ``kubeforge *args`` and power ``machine`` off as soon as ``when`` succeeds on it; the
    command's exit status, stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "kubeforge", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while lab.exec(machine, when).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(args[:2])} ended before {machine} lost power: {proc.returncode}\n{out}\n{err}")
        time.sleep(0.2)
    lab.stop_machine(machine)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def three(elab, tmp_path_factory) -> Path:
    """A 3-member cluster installed by kubeforge (once for the module). The first attempt loses
    etcd-3's machine mid-install; the second, once it is back, must converge."""
    inv = inventory_with(elab, tmp_path_factory.mktemp("inv") / "etcd3.yaml", ["etcd-1", "etcd-2", "etcd-3"])
    # apt is running on etcd-3 while kubeforge's policy-rc.d is in place: pull the plug then
    INSTALL_OUTCOME["first"] = power_loss_during(elab, "etcd-3", ["test", "-e", "/usr/sbin/policy-rc.d"],
                                                 "etcd", "install", "-i", str(inv), "--yes")
    elab.start_machine("etcd-3")
    res = kf("etcd", "install", "-i", str(inv), "--yes")
    INSTALL_OUTCOME["second"] = (res.returncode, res.stdout, res.stderr)
    assert res.returncode == 0, res.stdout + res.stderr
    return inv


def test_a_machine_lost_mid_install_is_named_and_a_rerun_converges(elab, three):
    code, out, err = INSTALL_OUTCOME["first"]
    assert code == 6, out + err
    assert "[etcd-3]" in err and "failed" in (out + err)
    # nothing was started on the other members: the run stopped before any etcd came up
    code, out, err = INSTALL_OUTCOME["second"]
    assert code == 0
    assert "3/3 healthy" in kf("etcd", "status", "-i", str(three)).stdout


def members_of(lab, on: str) -> list[dict]:
    res = etcdctl(lab, on, "member", "list", "-w", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["members"]


def test_install_starts_a_healthy_three_member_tls_cluster_that_serves_writes(elab, three):
    assert sorted(m["name"] for m in members_of(elab, "etcd-1")) == ["etcd-1", "etcd-2", "etcd-3"]
    assert etcdctl(elab, "etcd-1", "put", "/kf/first", "hello").returncode == 0
    got = etcdctl(elab, "etcd-3", "get", "/kf/first", "--print-value-only")
    assert got.stdout.strip() == "hello"
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        assert elab.exec(n, ["stat", "-c", "%a %U %G", "/var/lib/etcd"]).stdout.split() == ["700", "etcd", "etcd"]
        assert elab.exec(n, ["stat", "-c", "%a %U", f"{ETCD_PKI}/server.key"]).stdout.split() == ["600", "etcd"]
        assert elab.exec(n, ["test", "-e", "/usr/sbin/policy-rc.d"]).returncode != 0  # put back as it was


def test_status_shows_three_healthy_members_and_one_leader(elab, three):
    res = kf("etcd", "status", "-i", str(three), "-o", "json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert [m["healthy"] for m in st["members"]] == [True, True, True]
    assert sum(m["is_leader"] for m in st["members"]) == 1 and st["leader"] in ("etcd-1", "etcd-2", "etcd-3")
    table = kf("etcd", "status", "-i", str(three))
    assert "3/3 healthy" in table.stdout


def test_a_second_install_changes_nothing(elab, three):
    res = kf("etcd", "install", "-i", str(three), "--yes")
    assert res.returncode == 0, res.stderr
    assert "nothing changed" in res.stdout
    report = json.loads(sorted(three.parent.glob(".kubeforge/*/runs/*etcd-install*/report.json"))[-1].read_text())
    assert {s["status"] for s in report["steps"]} == {"unchanged"}, [s for s in report["steps"] if s["status"] != "unchanged"]


def test_an_etcd_change_waits_for_the_cluster_lock_another_run_holds(elab, three):
    holder = {"user": "alice", "machine": "ops-laptop", "pid": 4242, "command": "kubeforge upgrade --to 1.34.2",
              "since": "2026-11-22T09:00:00Z", "run_id": "20261122T090000Z-upgrade"}
    lock = "/var/lib/kubeforge/lock"
    # the control plane holds the lock, as for `up` and `upgrade`
    assert elab.exec("etcd-1", ["sh", "-c", f"mkdir -p /var/lib/kubeforge && cat > {lock}"],
                     input=json.dumps(holder)).returncode == 0
    try:
        res = kf("etcd", "install", "-i", str(three), "--yes")
        assert res.returncode == 7, res.stdout + res.stderr
        assert "alice@ops-laptop" in res.stderr and "kubeforge upgrade --to 1.34.2" in res.stderr
        assert json.loads(elab.exec("etcd-1", ["cat", lock]).stdout)["run_id"] == holder["run_id"]
        res = kf("etcd", "install", "-i", str(three), "--yes", "--break-lock")
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        elab.exec("etcd-1", ["rm", "-f", lock])
    assert elab.exec("etcd-1", ["test", "-e", lock]).returncode != 0  # released by the run that took it


def test_a_changed_setting_restarts_members_one_at_a_time_leader_last_and_keeps_the_data(elab, three, tmp_path):
    yaml = YAML()
    doc = yaml.load(three.read_text())
    doc["spec"]["etcd"]["heartbeatIntervalMs"] = 150
    changed = three.with_name("etcd3-heartbeat.yaml")
    with changed.open("w") as f:
        yaml.dump(doc, f)
    leader = json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)["leader"]
    res = kf("etcd", "install", "-i", str(changed), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    # progress lines ("[host] title … done"), not the plan printed before them
    restarts = [line for line in res.stderr.splitlines()
                if line.startswith("[") and "Restart etcd with the new configuration" in line]
    assert len(restarts) == 3 and f"[{leader}]" in restarts[-1], restarts
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        assert 'ETCD_HEARTBEAT_INTERVAL="150"' in elab.exec(n, ["cat", "/etc/etcd/etcd.env"]).stdout
    assert etcdctl(elab, "etcd-2", "get", "/kf/first", "--print-value-only").stdout.strip() == "hello"
    again = kf("etcd", "install", "-i", str(changed), "--yes")
    assert again.returncode == 0 and "nothing changed" in again.stdout


def test_a_client_without_a_certificate_is_refused(elab, three):
    res = etcdctl(elab, "etcd-1", "get", "/kf/first", tls=False)
    assert res.returncode != 0
    res = elab.exec("etcd-1", ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints=https://{elab.address('etcd-1')}:2379",
                               f"--cacert={ETCD_PKI}/ca.crt", "--dial-timeout=3s", "--command-timeout=5s", "get", "/kf/first"])
    assert res.returncode != 0 and "hello" not in res.stdout


def backups_dir(inv: Path) -> Path:
    return next(inv.parent.glob(".kubeforge/*")) / "backups"


def test_backup_is_verified_recorded_and_retention_keeps_exactly_n(elab, three):
    for i in range(4):
        assert etcdctl(elab, "etcd-1", "put", f"/kf/backup/{i}", f"v{i}").returncode == 0
        res = kf("etcd", "backup", "-i", str(three), "--keep", "2", "-o", "json")
        assert res.returncode == 0, res.stderr
        time.sleep(1.1)  # backup names carry the time to the second
    last = json.loads(res.stdout)
    m = last["manifest"]
    assert m["verified"] and m["total_keys"] >= 5 and len(m["sha256"]) == 64
    assert m["member"] != json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)["leader"]
    d = backups_dir(three)
    manifests = sorted(d.glob("*.manifest.json"))
    assert len(manifests) == 2 and len(last["deleted"]) == 1
    snap = d / m["file"]
    assert oct(snap.stat().st_mode & 0o777) == "0o600"
    from kubeforge.model.files import file_sha256 as sha256_file

    assert sha256_file(snap) == m["sha256"]
    table = kf("etcd", "backup", "-i", str(three), "--keep", "2")
    assert table.returncode == 0 and "verification: passed" in table.stdout and "sha256:" in table.stdout


def test_a_flipped_byte_fails_verification_and_is_never_counted(elab, three, tmp_path):
    from kubeforge.backups.retention import list_backups, plan_retention
    from kubeforge.backups.store import read_verified_snapshot
    from kubeforge.errors import InputError

    d = backups_dir(three)
    good = sorted(d.glob("*.manifest.json"))[-1]
    bad_dir = tmp_path / "copy"
    bad_dir.mkdir()
    manifest = json.loads(good.read_text())
    data = bytearray((d / manifest["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad_dir / manifest["file"]).write_bytes(bytes(data))
    (bad_dir / good.name).write_text(good.read_text())
    with pytest.raises(InputError, match="does not match"):
        read_verified_snapshot(bad_dir / good.name)
    res = kf("etcd", "restore", "-i", str(three), "--from", str(bad_dir / good.name), "--yes")
    assert res.returncode == 3 and "does not match" in res.stderr
    # a file that failed verification at backup time sits in failed/ and retention never counts it
    failed = dict(manifest, verified=False, name=manifest["name"] + "-bad")
    (bad_dir / (failed["name"] + ".manifest.json")).write_text(json.dumps(failed))
    kept = [b for b in list_backups(bad_dir) if b.verified]
    assert [b.name for b in kept] == [manifest["name"]] and plan_retention(list_backups(bad_dir), keep=1, max_age_days=None) == []


def test_restore_brings_every_key_back_and_keeps_the_old_data_aside(elab, three):
    for i in range(20):
        assert etcdctl(elab, "etcd-2", "put", f"/kf/restore/{i:02d}", f"value-{i}").returncode == 0
    res = kf("etcd", "backup", "-i", str(three), "-o", "json")
    assert res.returncode == 0, res.stderr
    name = json.loads(res.stdout)["manifest"]["name"]
    assert etcdctl(elab, "etcd-1", "del", "--prefix", "/kf/restore/").stdout.strip() == "20"
    res = kf("etcd", "restore", "-i", str(three), "--from", name, "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    for n in ("etcd-1", "etcd-2", "etcd-3"):
        got = etcdctl(elab, n, "get", "--prefix", "/kf/restore/", "--print-value-only").stdout.split()
        assert got == [f"value-{i}" for i in range(20)], n
        aside = elab.exec(n, ["bash", "-c", "ls -d /var/lib/etcd.kubeforge-*"]).stdout.split()
        assert aside and elab.exec(n, ["test", "-d", aside[-1] + "/member"]).returncode == 0
    st = json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)
    assert st["allHealthy"] and st["healthy"] == 3


def test_an_upgrade_dry_run_plans_a_snapshot_first_and_the_leader_last_and_a_downgrade_is_refused(elab, three):
    leader = json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)["leader"]
    # the mirror lacks 3.4.45 (the latest 3.4 patch etcd wants first): that is refused unless allowed
    res = kf("etcd", "upgrade", "-i", str(three), "--to", "3.5.16", "--dry-run")
    assert res.returncode == 7 and "3.4.45" in res.stderr, res.stdout + res.stderr
    res = kf("etcd", "upgrade", "-i", str(three), "--to", "3.5.16", "--allow-older-patch", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    plan = res.stdout
    assert plan.index("Take and verify an etcd snapshot first") < plan.index("Upgrade etcd to 3.5.16")
    hop = plan[plan.index("Upgrade etcd to 3.5.16"):]
    order = [n for n in ("etcd-1", "etcd-2", "etcd-3") if f"[{n}]" in hop]
    assert sorted(order, key=hop.index)[-1] == leader
    down = kf("etcd", "upgrade", "-i", str(three), "--to", "3.4.22")
    assert down.returncode == 7 and "3.4.22" in down.stderr
    st = json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)
    assert {m["version"] for m in st["members"]} == {"3.4.23"}  # a dry run and refusals touch nothing


def test_with_a_member_machine_down_backup_still_succeeds_and_status_names_it(elab, three):
    # last in the module: etcd-3 comes back with a fresh disk, so it stays down afterwards
    elab.stop_machine("etcd-3")
    # the operator of a fleet with a dead machine shortens the wait for it (spec.ssh): the same
    # cluster (same name, same .kubeforge beside it) with a 3 s connect timeout and no retry
    fast = three.with_name("etcd3-fast.yaml")
    yaml = YAML()
    doc = yaml.load(three.read_text())
    doc["spec"].setdefault("ssh", {}).update(connectTimeoutSeconds=3, connectRetries=0)
    with fast.open("w") as f:
        yaml.dump(doc, f)
    res = kf("etcd", "backup", "-i", str(fast), "-o", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["manifest"]["member"] in ("etcd-1", "etcd-2")
    st = kf("etcd", "status", "-i", str(fast))
    # a member whose machine SSH cannot reach: exit 5 in every command (README's table), named
    assert st.returncode == 5 and "etcd-3" in st.stderr and "2/3 healthy" in st.stdout, st.stdout + st.stderr


def test_a_member_whose_machine_came_back_empty_is_replaced_and_the_cluster_heals(elab, three):
    # follows the test above: etcd-3 is down; it boots again with a fresh disk
    elab.start_machine("etcd-3")
    refused = kf("etcd", "install", "-i", str(three), "--yes")
    assert refused.returncode == 7 and "etcd-3" in refused.stderr and "etcd members" in refused.stderr
    res = kf("etcd", "members", "-i", str(three), "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    st = json.loads(kf("etcd", "status", "-i", str(three), "-o", "json").stdout)
    assert st["allHealthy"] and st["healthy"] == 3
    got = etcdctl(elab, "etcd-3", "get", "/kf/restore/05", "--print-value-only")
    assert got.stdout.strip() == "value-5"
