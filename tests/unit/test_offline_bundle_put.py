"""Pushing a file from the operator's disk (an offline bundle's .deb): streamed in pieces through real
bash commands, checked on the host before it replaces anything, skipped when the host has it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kubeforge.errors import CommandFailed
from kubeforge.execute.report import StepStatus
from kubeforge.execute.step_runner import StepRunner
from kubeforge.model.files import LocalFile
from kubeforge.plan.steps import PutFileStep
from kubeforge.transport.local import LocalTransport
from kubeforge.transport.policy import BaseTransport


class PiecewiseTransport(LocalTransport):
    """A LocalTransport whose local-file puts take the path every remote transport takes: pieces
    appended by `cat` through bash, then a sha256 check and a rename. Records each command's stdin size."""

    PUT_CHUNK = 1000
    _write_from = BaseTransport._write_from

    def __init__(self) -> None:
        super().__init__("host-1")
        self.stdin_sizes: list[int] = []

    def _run(self, command, sink=None, *, internal=False):
        self.stdin_sizes.append(len(command.stdin or b""))
        return super()._run(command, sink, internal=internal)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def deb(tmp_path) -> Path:
    p = tmp_path / "local" / "kubeadm_1.34.2-1.1_all.deb"
    p.parent.mkdir()
    p.write_bytes(os.urandom(4500))
    return p


def test_a_local_file_goes_in_pieces_no_larger_than_the_chunk_and_arrives_whole(tmp_path, deb):
    t = PiecewiseTransport()
    dest = tmp_path / "host" / "bundle" / deb.name
    res = t.put_file(str(dest), deb, mode=0o644)
    assert res.changed and res.size == 4500 and res.sha256 == sha(deb.read_bytes())
    assert dest.read_bytes() == deb.read_bytes() and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert max(t.stdin_sizes) == 1000 and sum(t.stdin_sizes) == 4500  # 5 pieces, never the whole file
    assert [p.name for p in dest.parent.iterdir()] == [deb.name]  # no temp file left beside it


def test_a_second_push_of_the_same_file_sends_nothing(tmp_path, deb):
    t = PiecewiseTransport()
    dest = tmp_path / "host" / deb.name
    t.put_file(str(dest), deb)
    t.stdin_sizes.clear()
    res = t.put_file(str(dest), deb)
    assert not res.changed and sum(t.stdin_sizes) == 0


def test_a_file_that_changed_after_it_was_checked_never_replaces_the_hosts_copy(tmp_path, deb):
    dest = tmp_path / "host" / deb.name
    dest.parent.mkdir()
    dest.write_bytes(b"the host's good copy")
    checked = sha(deb.read_bytes())
    deb.write_bytes(os.urandom(3000))  # changed on disk between the index check and the push
    for t in (PiecewiseTransport(), LocalTransport("host-1")):
        with pytest.raises(CommandFailed) as e:
            t.put_file(str(dest), deb, sha256=checked)
        assert checked in str(e.value)
        assert dest.read_bytes() == b"the host's good copy"
        assert [p.name for p in dest.parent.iterdir()] == [deb.name]


def test_the_step_runner_pushes_a_local_file_then_reports_it_unchanged(tmp_path, deb):
    t = LocalTransport("host-1", root=tmp_path / "host")

    class Pool:
        def get(self, host):
            return t

    f = LocalFile(f"/var/cache/kubeforge/bundle/{deb.name}", deb, sha(deb.read_bytes()), deb.stat().st_size)
    step = PutFileStep("host-1", f).bind("InstallPackages")
    runner = StepRunner(Pool())
    assert runner.run(step).status is StepStatus.DONE
    assert (tmp_path / "host" / "var/cache/kubeforge/bundle" / deb.name).read_bytes() == deb.read_bytes()
    assert runner.run(step).status is StepStatus.UNCHANGED
    d = step.to_dict()["file"]
    assert d["size"] == 4500 and d["sha256"] == f.sha256 and not d["secret"]


def test_an_empty_file_and_a_one_piece_file_each_take_one_write_command(tmp_path):
    t = PiecewiseTransport()
    for name, data in (("empty", b""), ("small", b"x" * 999)):
        src = tmp_path / f"{name}.deb"
        src.write_bytes(data)
        t.stdin_sizes.clear()
        res = t.put_file(str(tmp_path / "host" / src.name), src)
        assert res.changed and (tmp_path / "host" / src.name).read_bytes() == data
        # (LocalTransport probes in Python): one command creates the temp file, writes, checks and renames
        assert t.stdin_sizes == [len(data)]
