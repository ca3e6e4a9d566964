"""The local (flock) and cluster (noclobber file on the first control plane) locks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from kubeforge.errors import LockHeld
from kubeforge.execute import ClusterLock, LocalLock, LockInfo
from kubeforge.transport.local import LocalTransport


def info(run_id: str, *, machine: str | None = None, pid: int | None = None) -> LockInfo:
    me = LockInfo.mine("kubeforge upgrade -i inv.yaml --to 1.34.2", run_id)
    return LockInfo(me.user, machine or me.machine, pid or me.pid, me.command, "2026-11-22T07:45:00Z", run_id)


@pytest.fixture
def cp1(tmp_path):
    return LocalTransport(host="cp-1")


def lock_path(tmp_path) -> str:
    return str(tmp_path / "cp-1" / "var/lib/kubeforge/lock")


def test_a_second_operator_is_refused_with_who_holds_the_cluster_lock_and_since_when(tmp_path, cp1):
    ClusterLock(cp1, lock_path(tmp_path), sudo=False).acquire(info("run-a", machine="alice-laptop", pid=4242))
    with pytest.raises(LockHeld) as exc:
        ClusterLock(cp1, lock_path(tmp_path), sudo=False).acquire(info("run-b"))
    msg = str(exc.value)
    assert f"the cluster lock {lock_path(tmp_path)} on cp-1 is held by" in msg
    assert "@alice-laptop (pid 4242, `kubeforge upgrade -i inv.yaml --to 1.34.2`) since 2026-11-22T07:45:00Z, run run-a" in msg
    assert "--break-lock" in exc.value.hint
    assert exc.value.exit_code == 7


def test_breaking_a_stale_cluster_lock_lets_the_next_run_take_it(tmp_path, cp1):
    ClusterLock(cp1, lock_path(tmp_path), sudo=False).acquire(info("run-dead"))
    mine = ClusterLock(cp1, lock_path(tmp_path), sudo=False)
    previous = mine.break_()
    assert previous is not None and previous.run_id == "run-dead"
    mine.acquire(info("run-new"))
    assert mine.holder().run_id == "run-new"
    mine.release()
    assert not os.path.exists(lock_path(tmp_path))


def test_a_lock_left_by_a_dead_process_on_this_machine_is_called_stale(tmp_path, cp1):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ClusterLock(cp1, lock_path(tmp_path), sudo=False).acquire(info("run-dead", pid=int(dead.stdout)))
    with pytest.raises(LockHeld, match="stale: that process no longer runs"):
        ClusterLock(cp1, lock_path(tmp_path), sudo=False).acquire(info("run-b"))


def test_release_leaves_a_lock_someone_else_took_after_breaking_ours(tmp_path, cp1):
    ours = ClusterLock(cp1, lock_path(tmp_path), sudo=False)
    ours.acquire(info("run-ours"))
    theirs = ClusterLock(cp1, lock_path(tmp_path), sudo=False)
    theirs.break_()
    theirs.acquire(info("run-theirs"))
    ours.release()
    assert theirs.holder().run_id == "run-theirs"


def test_the_local_lock_refuses_a_second_process_and_names_the_holder(tmp_path):
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from kubeforge.execute import LocalLock, LockInfo
                LocalLock({str(state)!r}).acquire(LockInfo.mine("kubeforge up", "run-other"))
                print("held", flush=True)
                time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as exc:
            LocalLock(state).acquire(info("run-me"))
        assert "the local lock" in str(exc.value) and f"pid {holder.pid}, `kubeforge up`" in str(exc.value)
        assert "released when its process exits" in exc.value.hint
    finally:
        holder.kill()
        holder.wait()
    lock = LocalLock(state)
    lock.acquire(info("run-me"))  # the kernel dropped the dead holder's lock
    lock.release()
