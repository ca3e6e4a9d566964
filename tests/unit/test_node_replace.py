"""`node replace`: what is refused before anything is touched (a live healthy host, the first
control plane, another etcd member down), the phases that take the dead machine out of the books
(quorum gate, stacked member removal, Node deletion), and the replacement's new host key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from kubeforge.errors import SafetyRefusal, UsageError
from kubeforge.model import EndpointMode, EtcdTopology
from kubeforge.model.cluster import HostKeyPolicy
from kubeforge.plan.etcd.membership import ListedMember
from kubeforge.plan.node.replace import (
    HostHealth,
    check_target,
    delete_node_phase,
    refuse_below_quorum,
    refuse_if_healthy,
    stacked_member_phases,
)
from kubeforge.transport.hostkeys import HostKeyCheck
from kubeforge.transport.known_hosts import forget_host, load
from kubeforge.workflows.node import replacement_host_key
from tests.factories import make_cluster

ROOT = Path(__file__).resolve().parents[2]
STAMP = "20261206T170000Z"


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("replace-ext"), n_etcd=3, n_cp=3, n_workers=2, n_lb=2,
                        endpoint_mode=EndpointMode.HAPROXY)


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("replace-stacked"), topology=EtcdTopology.STACKED, n_cp=3,
                        n_workers=1, n_lb=1, endpoint_mode=EndpointMode.HAPROXY)


def listed(cluster, down: tuple[str, ...] = ()) -> tuple[ListedMember, ...]:
    return tuple(ListedMember(f"{i + 10:x}", h.name, (f"https://{h.internal_address}:2380",),
                              (f"https://{h.internal_address}:2379",), healthy=h.name not in down)
                 for i, h in enumerate(cluster.etcd_members))


def host(cluster, name):
    return next(h for h in cluster.hosts if h.name == name)


def test_a_reachable_healthy_etcd_host_is_refused_with_exit_7_naming_remove_and_up(external):
    with pytest.raises(SafetyRefusal, match="etcd-3 .* is reachable and its etcd member is healthy") as e:
        refuse_if_healthy(host(external, "etcd-3"), HostHealth(True, etcd_healthy=True), force=False)
    assert e.value.exit_code == 7 and "node remove etcd-3" in (e.value.hint or "") and "--force" in (e.value.hint or "")
    refuse_if_healthy(host(external, "etcd-3"), HostHealth(True, etcd_healthy=True), force=True)


def test_a_blank_replacement_is_not_healthy_whatever_part_of_it_answers():
    assert not HostHealth(True, etcd_healthy=False).healthy  # reachable, no member running
    assert not HostHealth(True, etcd_healthy=True, node_ready=False).healthy  # a node that has not joined
    assert not HostHealth(False, etcd_healthy=True).healthy
    assert not HostHealth(True).healthy  # nothing said it is healthy
    assert HostHealth(True, etcd_healthy=True, node_ready=True).healthy


def test_the_first_control_plane_is_not_replaced(external):
    with pytest.raises(SafetyRefusal, match="cp-1 is the first control plane") as e:
        check_target(external, host(external, "cp-1"))
    assert e.value.exit_code == 7
    check_target(external, host(external, "cp-2"))


def test_replacing_a_member_while_another_is_down_is_refused_as_it_could_lose_quorum(external):
    # etcd-3 is the dead one; etcd-2 down as well leaves 1 of 3 healthy
    with pytest.raises(SafetyRefusal, match=r"etcd-2 down besides etcd-3 \(1 of 3 voting members healthy\)") as e:
        refuse_below_quorum(external, host(external, "etcd-3"), listed(external, down=("etcd-2", "etcd-3")))
    assert e.value.exit_code == 7 and "nothing was changed" in str(e.value)
    refuse_below_quorum(external, host(external, "etcd-3"), listed(external, down=("etcd-3",)))
    # a member an earlier run removed already: the two that stay are healthy
    refuse_below_quorum(external, host(external, "etcd-3"), listed(external)[:2])


def test_a_stacked_control_plane_loses_its_member_between_two_quorum_gates(stacked):
    phases = stacked_member_phases(stacked, host(stacked, "cp-3"), listed(stacked, down=("cp-3",)))
    assert [p.name for p in phases] == ["GateEtcdQuorum", "RemoveEtcdMember-cp-3"]
    gate = phases[0].lanes[0]
    assert gate.host == "cp-1" and "2 members" in gate.steps[0].what
    remove = [s for lane in phases[1].lanes for s in lane.steps]
    assert " member remove c 2>" in remove[0].command.script  # cp-3's id (hex), by a member that stays
    assert remove[-1].title == "Wait for etcd healthy without cp-3"


def test_a_stacked_member_already_gone_and_a_worker_plan_no_member_removal(stacked):
    gone = stacked_member_phases(stacked, host(stacked, "cp-3"), listed(stacked)[:2])
    assert len(gone) == 1 and gone[0].is_noop and "no longer lists cp-3" in gone[0].reason
    assert stacked_member_phases(stacked, host(stacked, "worker-1"), listed(stacked)) == []


def test_the_old_node_object_is_deleted_from_the_first_control_plane(external):
    p = delete_node_phase(external, host(external, "worker-2"), STAMP)
    steps = [s for lane in p.lanes for s in lane.steps]
    assert [lane.host for lane in p.lanes] == ["cp-1"]
    assert "delete node worker-2 --ignore-not-found" in steps[0].command.script


def _key_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def _hashed(name: str, key: paramiko.PKey) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return _key_line(f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}", key)


def test_forget_host_removes_exactly_that_hosts_keys_as_ssh_keygen_r_does(tmp_path):
    old, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    kh = tmp_path / "known_hosts"
    kept = [_key_line("10.0.0.12", other), _key_line("10.0.0.*", other), "@revoked 10.0.0.11 " + _key_line("", other).lstrip(),
            "# a comment\n"]
    kh.write_text(_key_line("10.0.0.11", old) + kept[0] + _hashed("10.0.0.11", old) + kept[1] + kept[2] + kept[3])
    kh.chmod(0o640)
    removed = forget_host(kh, "10.0.0.11")
    assert removed == [f"{kh}:1", f"{kh}:3"]
    assert kh.read_text() == "".join(kept) and kh.stat().st_mode & 0o777 == 0o640
    assert forget_host(kh, "10.0.0.11") == [] and forget_host(tmp_path / "absent", "x") == []


def test_accept_new_host_key_trusts_the_replacements_key_for_that_host_only(external, tmp_path):
    old, new = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    kh = tmp_path / "known_hosts"
    etcd3, etcd2 = host(external, "etcd-3"), host(external, "etcd-2")
    kh.write_text(_key_line(etcd3.address, old) + _key_line(etcd2.address, old))
    ssh = etcd3.ssh.__class__(**{**etcd3.ssh.__dict__, "known_hosts": kh})
    cluster = external.__class__(**{**external.__dict__, "hosts": tuple(
        h.__class__(**{**h.__dict__, "ssh": ssh}) for h in external.hosts)})
    after = replacement_host_key(cluster, "etcd-3", accept_new=True)
    mine, theirs = host(after, "etcd-3"), host(after, "etcd-2")
    assert mine.ssh.host_key_policy is HostKeyPolicy.ACCEPT_NEW and theirs.ssh.host_key_policy is HostKeyPolicy.STRICT
    HostKeyCheck("etcd-3", mine.address, 22, kh, mine.ssh.host_key_policy).verify(new)  # recorded
    assert [k.key.asbytes() for k in load(kh)] == [old.asbytes(), new.asbytes()]
    assert replacement_host_key(cluster, "etcd-3", accept_new=False) is cluster
    with pytest.raises(UsageError, match="no host named 'etcd-9'"):
        replacement_host_key(cluster, "etcd-9", accept_new=True)


def test_a_pinned_host_key_is_not_overridden_by_the_flag(external):
    pinned = external.__class__(**{**external.__dict__, "hosts": tuple(
        h.__class__(**{**h.__dict__, "host_key": "ssh-ed25519 AAAA"}) if h.name == "etcd-3" else h
        for h in external.hosts)})
    with pytest.raises(UsageError, match="pinned in the inventory") as e:
        replacement_host_key(pinned, "etcd-3", accept_new=True)
    assert e.value.exit_code == 2


def kubeforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60, cwd=cwd, check=False)


def test_node_replace_of_the_first_control_plane_exits_7_before_any_host_is_reached(tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text((ROOT / "inventories" / "ha-external-etcd.yaml").read_text())
    res = kubeforge("node", "replace", "cp-1", "-i", str(inv), "--yes", cwd=tmp_path)
    assert res.returncode == 7 and "cp-1 is the first control plane" in res.stderr and "Traceback" not in res.stderr
    assert not list((tmp_path / ".kubeforge").rglob("journal.jsonl"))
    bad = kubeforge("node", "replace", "cp-9", "-i", str(inv), "--yes", cwd=tmp_path)
    assert bad.returncode == 2 and "no host named 'cp-9'" in bad.stderr
