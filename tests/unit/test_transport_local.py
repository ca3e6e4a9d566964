"""LocalTransport runs real commands through a real bash and writes real files (under tmp_path)."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from kubeforge.errors import CommandFailed
from kubeforge.model.secret import Secret
from kubeforge.transport import Command, LocalTransport, Transport
from kubeforge.transport.policy import CommandTimeout
from kubeforge.transport.script import script_for, shell_line


def test_local_transport_satisfies_the_transport_protocol():
    assert isinstance(LocalTransport(), Transport)


def test_argv_is_quoted_so_spaces_survive():
    res = LocalTransport().run(Command(argv=["printf", "%s|", "a b", "c"]))
    assert res.stdout == "a b|c|"
    assert res.exit_status == 0 and res.ok


def test_script_runs_with_errexit_so_a_failing_line_stops_it():
    res = LocalTransport().run(Command(script="false\necho reached", check=False))
    assert res.exit_status == 1
    assert "reached" not in res.stdout


def test_failed_command_raises_with_host_masked_command_exit_code_and_stderr_tail():
    with pytest.raises(CommandFailed) as info:
        LocalTransport(host="cp-1").run(Command(script="echo first >&2\necho 'it broke' >&2\nexit 7"))
    err = info.value
    assert (err.host, err.exit_status) == ("cp-1", 7)
    assert "it broke" in err.stderr_tail and "first" in err.stderr_tail
    assert str(err).startswith("[cp-1] `echo first >&2 … (+2 lines)` exited 7: it broke")


def test_unchecked_failure_returns_the_exit_code():
    res = LocalTransport().run(Command(argv=["sh", "-c", "exit 42"], check=False))
    assert res.exit_status == 42 and not res.ok


def test_env_and_stdin_reach_the_command_and_secrets_are_not_in_its_command_line():
    token = Secret("tok-abcdef-123456")
    res = LocalTransport().run(
        Command(script='printf "%s\\n" "$TOKEN"; cat; tr "\\0" " " < /proc/$$/cmdline', env={"TOKEN": token}, stdin=b"from-stdin\n")
    )
    lines = res.stdout.splitlines()
    assert lines[0] == "tok-abcdef-123456"
    assert lines[1] == "from-stdin"
    assert token.reveal() not in lines[2]
    assert "bash -s" in lines[2]


def test_secret_stdin_is_delivered_but_never_displayed():
    cmd = Command(argv=["cat"], stdin=Secret("hunter2-hunter2"))
    res = LocalTransport().run(cmd)
    assert res.stdout == "hunter2-hunter2"
    assert "hunter2" not in res.command


def test_a_command_without_stdin_reads_end_of_file_instead_of_hanging():
    res = LocalTransport().run(Command(argv=["cat"], timeout=5))
    assert res.stdout == ""


def test_timeout_stops_the_command_and_raises_a_typed_error():
    with pytest.raises(CommandTimeout) as info:
        LocalTransport().run(Command(argv=["sleep", "30"], timeout=0.3))
    assert info.value.exit_status == 124
    assert "timed out after 0.3s" in str(info.value)


def test_every_command_is_logged_with_host_masked_command_and_exit_code(caplog):
    caplog.set_level(logging.DEBUG, logger="kubeforge.transport")
    LocalTransport(host="w-1").run(Command(argv=["true"]))
    rec = [r for r in caplog.records if r.name == "kubeforge.transport"][-1]
    assert rec.host == "w-1"
    assert "true -> exit 0" in rec.getMessage()


def test_put_writes_atomically_with_mode_and_reports_change(tmp_path):
    t = LocalTransport(root=tmp_path)
    res = t.put("/etc/kubeforge/a.yaml", b"x: 1\n", mode=0o640)
    target = tmp_path / "etc/kubeforge/a.yaml"
    assert res.changed and target.read_bytes() == b"x: 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".kubeforge")]


def test_put_skips_when_sha256_matches_but_still_fixes_the_mode(tmp_path):
    t = LocalTransport(root=tmp_path)
    t.put("/etc/a", b"same", mode=0o644)
    inode = (tmp_path / "etc/a").stat().st_ino
    res = t.put("/etc/a", b"same", mode=0o600)
    assert not res.changed
    assert (tmp_path / "etc/a").stat().st_ino == inode
    assert stat.S_IMODE((tmp_path / "etc/a").stat().st_mode) == 0o600


def test_put_replaces_changed_content(tmp_path):
    t = LocalTransport(root=tmp_path)
    t.put("/etc/a", b"old")
    assert t.put("/etc/a", b"new").changed
    assert (tmp_path / "etc/a").read_bytes() == b"new"


def test_put_refuses_a_relative_path(tmp_path):
    with pytest.raises(ValueError):
        LocalTransport(root=tmp_path).put("etc/a", b"x")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_put_sets_the_owner_when_running_as_root(tmp_path):
    LocalTransport(root=tmp_path).put("/f", b"x", owner="nobody", group="nogroup")
    st = (tmp_path / "f").stat()
    import pwd

    assert st.st_uid == pwd.getpwnam("nobody").pw_uid


def test_get_copies_with_checksum(tmp_path):
    t = LocalTransport(root=tmp_path)
    t.put("/var/backup.db", b"\x00" * 3_000_000)
    res = t.get("/var/backup.db", str(tmp_path / "out" / "b.db"))
    assert res.size == 3_000_000
    assert (tmp_path / "out/b.db").read_bytes() == b"\x00" * 3_000_000
    assert res.sha256 == t.put("/var/backup.db", b"\x00" * 3_000_000).sha256


def test_get_of_a_missing_file_is_a_command_failure(tmp_path):
    with pytest.raises(CommandFailed):
        LocalTransport(root=tmp_path).get("/nope", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_script_puts_env_before_the_body_and_exit_on_the_same_line_as_the_call():
    text = script_for(Command(argv=["id"], env={"A": "1 2"}))
    assert text.splitlines()[0] == "export A='1 2'"
    assert text.rstrip().endswith("__kf_main; exit $?")


def test_script_rejects_bad_environment_names():
    with pytest.raises(ValueError):
        script_for(Command(argv=["id"], env={"A B": "x"}))


def test_the_host_command_line_never_carries_the_command():
    assert shell_line(sudo=True, timeout=30) == "sudo -n -- timeout -k 5 30 bash -s"
    assert shell_line(sudo=False, timeout=None) == "bash -s"


def test_put_under_a_rehearsal_root_accepts_owners_this_machine_does_not_have(tmp_path):
    res = LocalTransport(root=tmp_path).put("/etc/etcd/etcd.env", b"X=1\n", owner="etcd-nonexistent", group="etcd-nonexistent")
    assert res.changed and (tmp_path / "etc/etcd/etcd.env").read_bytes() == b"X=1\n"
