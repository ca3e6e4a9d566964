"""SshTransport against a real OpenSSH server on loopback (see sshd_helper.py)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess

import pytest

from kubeforge.errors import CommandFailed
from kubeforge.logs import open_run_log
from kubeforge.model.secret import Secret
from kubeforge.transport import Command
from kubeforge.transport.policy import CommandTimeout
from kubeforge.transport.ssh import SshTransport
from tests.integration.sshd_helper import known_hosts, ssh_keys, sshd, sudo_user  # noqa: F401 - fixtures


@pytest.fixture
def root_t(sshd, known_hosts):
    with SshTransport(sshd.host("h1", known_hosts)) as t:
        yield t


@pytest.fixture
def user_t(sshd, known_hosts, sudo_user):
    with SshTransport(sshd.host("h1", known_hosts, user=sudo_user)) as t:
        yield t


def test_argv_and_script_commands_return_output_and_exit_codes(user_t):
    assert user_t.run(Command(argv=["printf", "%s|", "a b", "c"])).stdout == "a b|c|"
    res = user_t.run(Command(script="echo out\necho err >&2\nexit 4", check=False))
    assert (res.exit_status, res.stdout, res.stderr) == (4, "out\n", "err\n")


def test_a_failing_command_raises_with_the_stderr_tail(user_t):
    with pytest.raises(CommandFailed) as info:
        user_t.run(Command(script="for i in $(seq 1 30); do echo line$i >&2; done\nexit 9"))
    assert info.value.exit_status == 9 and info.value.host == "h1"
    assert info.value.stderr_tail.splitlines()[-1] == "line30"
    assert "line1\n" not in info.value.stderr_tail  # only the tail


def test_env_and_stdin_reach_the_remote_command(user_t):
    res = user_t.run(Command(script='echo "$A"; wc -c', env={"A": "x y"}, stdin=b"12345"))
    assert res.stdout.split() == ["x", "y", "5"]


def test_secrets_never_appear_in_any_remote_command_line(user_t):
    token = Secret("very-secret-token-42")
    script = (
        'for f in /proc/[0-9]*/cmdline; do c=$(tr "\\0" " " < "$f" 2>/dev/null || true)\n'
        '[[ "$c" == *"$T"* ]] && echo "LEAK $f $c"; done; echo checked'
    )
    res = user_t.run(Command(script=script, env={"T": token}, sudo=True))
    assert res.stdout.strip() == "checked"


def test_sudo_runs_as_root_and_plain_commands_as_the_login_user(user_t, sudo_user):
    assert user_t.run(Command(argv=["id", "-un"])).stdout.strip() == sudo_user
    assert user_t.run(Command(argv=["id", "-un"], sudo=True)).stdout.strip() == "root"


def test_sudo_is_not_used_when_logged_in_as_root(root_t):
    res = root_t.run(Command(script="tr '\\0' ' ' < /proc/$PPID/cmdline", sudo=True))
    assert "sudo" not in res.stdout


def test_a_timeout_stops_the_remote_command_and_raises(user_t):
    with pytest.raises(CommandTimeout):
        user_t.run(Command(argv=["sleep", "31.77"], timeout=0.5))
    left = subprocess.run(["pgrep", "-f", "sleep 31.77"], capture_output=True, text=True).stdout
    assert left == ""


def test_many_commands_share_one_connection(user_t):
    ports = {user_t.run(Command(script='echo "${SSH_CLIENT% *}"')).stdout for _ in range(15)}
    assert len(ports) == 1


def test_put_as_a_sudo_user_sets_mode_and_owner_and_skips_when_unchanged(user_t, sudo_user, tmp_path):
    path = str(tmp_path / "etc" / "kubeforge" / "cfg.yaml")
    os.chmod(tmp_path, 0o755)
    first = user_t.put(path, b"a: 1\n", mode=0o640, owner=sudo_user, group="root")
    st = os.stat(path)
    assert first.changed and open(path, "rb").read() == b"a: 1\n"
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == 0
    assert first.sha256 == hashlib.sha256(b"a: 1\n").hexdigest()
    inode = st.st_ino
    again = user_t.put(path, b"a: 1\n", mode=0o600, owner=sudo_user, group="root")
    assert not again.changed
    assert os.stat(path).st_ino == inode and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert user_t.put(path, b"a: 2\n", mode=0o600, owner=sudo_user, group="root").changed


def test_put_of_a_secret_file_is_0600_and_its_content_never_reaches_the_log(user_t, tmp_path):
    key = Secret("-----BEGIN PRIVATE KEY----- very secret key material")
    path = str(tmp_path / "pki" / "ca.key")
    with open_run_log(tmp_path / "state", "up") as run:
        user_t.put(path, key.reveal().encode(), mode=0o600, secret=True)
        user_t.run(Command(script='test -n "$K"', env={"K": key}))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = run.path.read_text()
    assert "put " + path in text
    assert "very secret key material" not in text


def test_get_streams_a_file_with_a_matching_checksum(root_t, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "snapshot.db"
    src.write_bytes(data)
    res = root_t.get(str(src), str(tmp_path / "out" / "copy.db"))
    assert res.size == len(data) and res.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out" / "copy.db").read_bytes() == data


def test_get_of_a_missing_file_fails_and_leaves_nothing_behind(root_t, tmp_path):
    with pytest.raises(CommandFailed):
        root_t.get(str(tmp_path / "missing"), str(tmp_path / "out" / "x"))
    assert list((tmp_path / "out").iterdir()) == []


def test_the_negotiated_cipher_is_aes_gcm(root_t):
    root_t.connect()
    assert root_t._t.remote_cipher == "aes128-gcm@openssh.com"


def test_a_shell_killed_by_a_signal_is_a_failure_not_a_lost_connection(user_t):
    res = user_t.run(Command(script="kill -9 $$", timeout=None, check=False))
    assert res.exit_status == 255
    assert user_t.run(Command(argv=["echo", "still connected"])).stdout == "still connected\n"


def test_a_failed_put_names_the_file_it_was_writing(root_t, tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    target = str(tmp_path / "plain" / "child.conf")
    with pytest.raises(CommandFailed) as info:
        root_t.put(target, b"x")
    assert info.value.command == f"sudo write {target}"
    assert "cannot create directory" in info.value.stderr_tail


def test_a_connection_cut_under_a_command_is_connection_lost_and_the_next_command_reconnects(root_t, sshd):
    """What the fault matrix's ssh-cut does to a run: the sshd processes serving the connection are
    killed. Whatever paramiko says about it (EOFError, "Channel closed"), the run sees ConnectionLost,
    and the next command (the cluster lock's release, say) goes over a new connection."""
    from kubeforge.transport.policy import ConnectionLost

    assert root_t.run(Command(argv=["true"])).exit_status == 0
    listener = sshd.proc.pid
    with pytest.raises(ConnectionLost):
        root_t.run(Command(script=f"kill -KILL $(pgrep -P {listener})", timeout=30, check=False))
    assert root_t.run(Command(argv=["echo", "back"])).stdout == "back\n"
