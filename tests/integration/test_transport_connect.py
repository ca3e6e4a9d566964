"""Connecting for real: host keys, retries, ProxyJump, fan-out over several SSH connections."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.errors import HostKeyError
from kubeforge.model import HostKeyPolicy
from kubeforge.transport import Command
from kubeforge.transport.hostkeys import fingerprint, parse_pinned
from kubeforge.transport.policy import NotReached
from kubeforge.transport.pool import Status, fanout
from kubeforge.transport.ssh import SshTransport
from tests.integration.sshd_helper import (  # noqa: F401 - fixtures
    Sshd,
    can_run_sshd,
    free_port,
    known_hosts,
    ssh_keys,
    sshd,
    sshd2,
    sudo_user,
)
from tests.need import skip_or_fail


def _hostname(t: SshTransport) -> str:
    return t.run(Command(argv=["echo", "ok"])).stdout.strip()


def test_an_unknown_host_key_is_refused_with_its_fingerprint(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError) as info:
        _hostname(SshTransport(sshd.host("h1", kh)))
    assert fingerprint(parse_pinned(sshd.host_pub)) in str(info.value)
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in str(info.value)
    assert not kh.exists()


def test_a_changed_host_key_is_refused_with_old_and_new_fingerprints(sshd, sshd2, tmp_path):
    kh = tmp_path / "known_hosts"
    # The key of another server, recorded under this server's address: exactly what a MITM looks like.
    kh.write_text(f"[127.0.0.1]:{sshd.port} {sshd2.host_pub}\n")
    t = SshTransport(sshd.host("h1", kh, host_key_policy=HostKeyPolicy.ACCEPT_NEW))
    with pytest.raises(HostKeyError) as info:
        _hostname(t)
    msg = str(info.value)
    assert "HOST KEY CHANGED" in msg
    assert fingerprint(parse_pinned(sshd2.host_pub)) in msg and fingerprint(parse_pinned(sshd.host_pub)) in msg
    assert "ssh-keygen -f" in info.value.hint


def test_accept_new_records_the_key_then_connects(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    with SshTransport(sshd.host("h1", kh, host_key_policy=HostKeyPolicy.ACCEPT_NEW)) as t:
        assert _hostname(t) == "ok"
    assert kh.read_text() == sshd.known_hosts_line()
    with SshTransport(sshd.host("h1", kh)) as strict:
        assert _hostname(strict) == "ok"


def test_a_pinned_key_is_accepted_without_known_hosts_and_a_wrong_pin_is_refused(sshd, sshd2, tmp_path):
    kh = tmp_path / "known_hosts"
    with SshTransport(sshd.host("h1", kh, host_key=sshd.host_pub)) as t:
        assert _hostname(t) == "ok"
    with pytest.raises(HostKeyError, match="the inventory pins"):
        _hostname(SshTransport(sshd.host("h1", kh, host_key=sshd2.host_pub)))


def test_a_closed_port_is_not_reached_after_the_configured_retries(sshd, tmp_path):
    port = free_port()
    host = sshd.host("gone", tmp_path / "kh", connect_retries=2)
    host = host.__class__(**{**host.__dict__, "ssh": host.ssh.__class__(**{**host.ssh.__dict__, "port": port})})
    t = SshTransport(host, retry_delay=0.01)
    with pytest.raises(NotReached) as info:
        t.run(Command(argv=["true"]))
    assert t.connect_attempts == 3 and info.value.attempts == 3
    assert "after 3 attempt(s)" in str(info.value)
    result = fanout([t], lambda tr: tr.run(Command(argv=["true"])))
    assert result["gone"].status is Status.NOT_REACHED


def test_a_target_is_reached_through_a_bastion(sshd, sshd2, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line() + sshd2.known_hosts_line())
    host = sshd.host("behind", kh, bastion=sshd2.as_bastion())
    with SshTransport(host) as t:
        # The target sees the connection arrive from the bastion's forwarding, not from us directly.
        assert t.run(Command(argv=["echo", "via bastion"])).stdout == "via bastion\n"
        assert len(t._hops) == 1 and t._hops[0].is_authenticated()
        put = t.put(str(tmp_path / "f"), b"through the jump host")
        assert put.changed and (tmp_path / "f").read_bytes() == b"through the jump host"


def test_the_bastion_host_key_is_verified_too(sshd, sshd2, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())  # the target is known, the bastion is not
    with pytest.raises(HostKeyError) as info:
        _hostname(SshTransport(sshd.host("behind", kh, bastion=sshd2.as_bastion())))
    assert "bastion" in str(info.value) and f"{sshd2.port}" in str(info.value)


def test_fanout_over_ssh_respects_the_limit(sshd, known_hosts, tmp_path):
    slots = tmp_path / "slots"
    slots.mkdir()
    transports = [SshTransport(sshd.host(f"w-{i}", known_hosts)) for i in range(8)]
    # Each command waits (up to 3 s) until it sees 3 commands in flight, so the peak does not
    # depend on how fast connections come up; more than 3 would mean the limit was ignored.
    script = (
        f'touch {slots}/"$H"; m=0\n'
        f'for i in $(seq 1 60); do n=$(ls {slots} | wc -l); [ "$n" -gt "$m" ] && m=$n; [ "$n" -ge 3 ] && break; sleep 0.05; done\n'
        f'sleep 0.2; n=$(ls {slots} | wc -l); [ "$n" -gt "$m" ] && m=$n\n'
        f'rm {slots}/"$H"; echo "$m"'
    )
    try:
        result = fanout(transports, lambda t: int(t.run(Command(script=script, env={"H": t.host})).stdout), limit=3)
    finally:
        for t in transports:
            t.close()
    assert result.ok
    assert max(result.values().values()) == 3


def _kill_tree(pid: int) -> None:
    """SIGKILL an sshd we started and every process below it (its per-connection children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_host_that_dies_mid_run_is_reported_while_the_others_finish(sshd, ssh_keys, tmp_path):
    if can_run_sshd():
        skip_or_fail(can_run_sshd())
    doomed = Sshd(tmp_path / "doomed", ssh_keys).start()
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line() + doomed.known_hosts_line())
    good = [SshTransport(sshd.host(f"w-{i}", kh)) for i in range(3)]
    bad = SshTransport(doomed.host("w-dead", kh))
    bad.run(Command(argv=["true"]))  # connected, then the machine goes away

    def work(t: SshTransport) -> str:
        if t is bad:
            _kill_tree(doomed.proc.pid)
        return t.run(Command(argv=["echo", "done"], timeout=10)).stdout.strip()

    try:
        result = fanout([*good, bad], work, limit=4)
    finally:
        for t in (*good, bad):
            t.close()
        doomed.proc.wait()
    assert [o.host for o in result.succeeded] == ["w-0", "w-1", "w-2"]
    assert result["w-dead"].status in (Status.FAILED, Status.NOT_REACHED)
    assert result["w-dead"].message


def test_a_key_held_by_ssh_agent_logs_in_without_an_identity_file(sshd, known_hosts, ssh_keys, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(ssh_keys)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        host = sshd.host("h1", known_hosts, identity_file=None, use_agent=True)
        with SshTransport(host) as t:
            assert _hostname(t) == "ok"
    finally:
        agent.terminate()
        agent.wait()


def test_after_a_lost_connection_the_next_command_reconnects(ssh_keys, tmp_path):
    from kubeforge.transport.policy import ConnectionLost

    server = Sshd(tmp_path / "restarting", ssh_keys).start()
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line())
    t = SshTransport(server.host("h1", kh))
    try:
        assert _hostname(t) == "ok"
        _kill_tree(server.proc.pid)
        server.proc.wait()
        server.start()  # same port, same host key: the machine is back
        with pytest.raises(ConnectionLost):
            t.run(Command(argv=["echo", "lost"], timeout=5))
        assert _hostname(t) == "ok"
        assert t.connect_attempts == 2
    finally:
        t.close()
        server.stop()
