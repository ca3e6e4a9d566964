"""SshTransport and fan-out against the lab: booted systemd-nspawn machines with real sshd + sudo."""

from __future__ import annotations

import hashlib
import os

import pytest

from kubeforge.errors import HostKeyError
from kubeforge.model import Bastion, HostKeyPolicy, Role, SshSettings
from kubeforge.transport import Command
from kubeforge.transport.pool import Status, fanout
from kubeforge.transport.ssh import SshTransport
from tests.factories import make_host

pytestmark = pytest.mark.lab


def _host(lab, name, **kw):
    ssh = SshSettings(
        user="kube", identity_file=lab.key_path, known_hosts=kw.pop("known_hosts", lab.known_hosts),
        use_agent=False, connect_retries=kw.pop("connect_retries", 0), connect_timeout=5.0,
        host_key_policy=kw.pop("host_key_policy", HostKeyPolicy.STRICT), bastion=kw.pop("bastion", None),
    )
    return make_host(name, lab.address(name), Role.WORKER, ssh=ssh, **kw)


def _all(lab):
    return [SshTransport(_host(lab, name)) for name in lab.machines]


def test_a_command_runs_on_every_lab_machine_in_parallel(lab):
    transports = _all(lab)
    try:
        result = fanout(transports, lambda t: t.run(Command(argv=["hostname"])).stdout.strip())
    finally:
        for t in transports:
            t.close()
    assert result.ok
    assert result.values() == {name: name for name in lab.machines}


def test_sudo_put_and_get_round_trip_with_modes_owner_and_checksums(lab, tmp_path):
    name = next(iter(lab.machines))
    data = os.urandom(2 * 1024 * 1024)
    with SshTransport(_host(lab, name)) as t:
        assert t.run(Command(argv=["id", "-u"], sudo=True)).stdout.strip() == "0"
        first = t.put("/etc/kubeforge-test/blob", data, mode=0o640, owner="root", group="kube")
        again = t.put("/etc/kubeforge-test/blob", data, mode=0o640, owner="root", group="kube")
        st = t.run(Command(argv=["stat", "-c", "%a %U %G", "/etc/kubeforge-test/blob"])).stdout.split()
        got = t.get("/etc/kubeforge-test/blob", str(tmp_path / "blob"))
        t.run(Command(argv=["rm", "-rf", "/etc/kubeforge-test"], sudo=True))
    assert first.changed and not again.changed
    assert st == ["640", "root", "kube"]
    assert got.sha256 == hashlib.sha256(data).hexdigest() == first.sha256
    assert (tmp_path / "blob").read_bytes() == data


def test_lab_machines_refuse_an_unknown_key_and_accept_new_records_the_real_one(lab, tmp_path):
    name = next(iter(lab.machines))
    kh = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError):
        SshTransport(_host(lab, name, known_hosts=kh)).run(Command(argv=["true"]))
    with SshTransport(_host(lab, name, known_hosts=kh, host_key_policy=HostKeyPolicy.ACCEPT_NEW)) as t:
        t.run(Command(argv=["true"]))
    recorded = kh.read_text().split()
    assert recorded[0] == lab.address(name)
    assert " ".join(recorded[1:3]) in lab.known_hosts.read_text()


def test_one_lab_machine_is_the_bastion_for_the_others(lab):
    names = list(lab.machines)
    jump = Bastion(address=lab.address(names[0]), port=22, user="kube")
    transports = [SshTransport(_host(lab, n, bastion=jump)) for n in names[1:]]
    try:
        result = fanout(
            transports,
            lambda t: t.run(Command(script='echo "$(hostname) ${SSH_CLIENT%% *}"')).stdout.split(),
        )
    finally:
        for t in transports:
            t.close()
    assert result.ok
    for n in names[1:]:
        host, client = result[n].value
        # the target sees the bastion's address as the client: the hop really went through it
        assert host == n and client == lab.address(names[0])


def test_a_machine_stopped_mid_run_is_reported_while_the_others_finish(lab):
    names = list(lab.machines)
    victim = names[-1]
    transports = _all(lab)
    for t in transports:
        t.connect()

    def work(t: SshTransport) -> str:
        if t.host == victim:
            lab.stop_machine(victim)
        return t.run(Command(argv=["hostname"], timeout=3)).stdout.strip()

    try:
        result = fanout(transports, work)
        after = fanout([SshTransport(_host(lab, victim))], lambda t: t.run(Command(argv=["true"])))
    finally:
        for t in transports:
            t.close()
        lab.start_machine(victim)
    assert [o.host for o in result.succeeded] == names[:-1]
    assert result[victim].status in (Status.FAILED, Status.NOT_REACHED)
    assert after[victim].status is Status.NOT_REACHED
