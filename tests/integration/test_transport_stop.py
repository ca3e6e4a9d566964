"""An interrupted run stops its commands on the host, not just its end of the SSH channel: against a
real OpenSSH server on loopback (sshd_helper.py), as root and through sudo."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from kubeforge.transport import Command
from kubeforge.transport.cancel import CommandStopped, stop_on
from kubeforge.transport.ssh import SshTransport
from tests.integration.sshd_helper import known_hosts, ssh_keys, sshd, sudo_user  # noqa: F401 - fixtures


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def run_until_stopped(t: SshTransport, tmp_path: Path, *, sudo: bool) -> tuple[BaseException | None, int]:
    pid_file = tmp_path / "pid"
    pid_file.touch()
    os.chmod(tmp_path, 0o777)
    os.chmod(pid_file, 0o666)
    event = threading.Event()
    outcome: dict = {}

    def work() -> None:
        with stop_on(event):
            try:
                t.run(Command(script=f"bash -c 'echo $$ > {pid_file}; exec sleep 120'", sudo=sudo, timeout=300))
            except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
                outcome["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 20
    while not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    assert alive(pid)
    event.set()
    worker.join(30)  # the command would run 120 s
    assert not worker.is_alive()
    return outcome.get("error"), pid


@pytest.mark.parametrize("as_user", [False, True], ids=["root", "sudo"])
def test_a_stop_request_ends_the_remote_command_and_raises_command_stopped(sshd, known_hosts, sudo_user, tmp_path,
                                                                          as_user):
    host = sshd.host("h1", known_hosts, user=sudo_user) if as_user else sshd.host("h1", known_hosts)
    with SshTransport(host) as t:
        error, pid = run_until_stopped(t, tmp_path, sudo=as_user)
        assert isinstance(error, CommandStopped), error
        assert "stopped on the host" in str(error)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "the remote command still runs after the stop"
        # the connection is still good for the next command (the lock release runs on it)
        assert t.run(Command(argv=["echo", "ok"])).stdout.strip() == "ok"


def test_a_command_asked_after_the_stop_is_not_started(sshd, known_hosts, tmp_path):
    marker = tmp_path / "ran"
    event = threading.Event()
    event.set()
    with SshTransport(sshd.host("h1", known_hosts)) as t, stop_on(event):
        with pytest.raises(CommandStopped, match="not started"):
            t.run(Command(argv=["touch", str(marker)]))
    assert not marker.exists()
