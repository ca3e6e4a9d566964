"""fanout and TransportPool with real functions and LocalTransports (no doubles)."""

from __future__ import annotations

import threading
import time

import pytest

from kubeforge.errors import CommandFailed, ExecutionFailed, HostKeyError
from kubeforge.transport import Command, LocalTransport
from kubeforge.transport.policy import ConnectionLost, NotReached
from kubeforge.transport.pool import Status, TransportPool, fanout
from tests.factories import make_cluster


def test_fanout_never_runs_more_than_limit_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i * 2

    result = fanout([str(i) for i in range(20)], lambda s: work(int(s)), limit=4)
    assert peak == 4
    assert result.ok and [o.value for o in result.outcomes] == [i * 2 for i in range(20)]


def test_one_failure_does_not_hide_behind_the_others_successes():
    def work(name: str) -> str:
        if name == "w-2":
            LocalTransport(host=name).run(Command(script="echo 'disk full' >&2; exit 3"))
        return name

    result = fanout(["w-1", "w-2", "w-3"], work)
    assert not result.ok
    assert [o.host for o in result.succeeded] == ["w-1", "w-3"]
    failed = result["w-2"]
    assert failed.status is Status.FAILED
    assert (failed.exit_status, failed.command) == (3, "echo 'disk full' >&2; exit 3")
    assert "disk full" in failed.stderr_tail


def test_connect_failures_and_host_key_refusals_are_reported_as_not_reached():
    def work(name: str):
        if name == "a":
            raise NotReached(name, "could not connect", attempts=3)
        raise HostKeyError(name, "unknown host key")

    result = fanout(["a", "b"], work)
    assert [o.status for o in result.outcomes] == [Status.NOT_REACHED, Status.NOT_REACHED]


def test_a_connection_lost_mid_command_is_a_failure_not_an_unreached_host():
    def work(name: str):
        raise ConnectionLost(name, "connection lost while a command was running")

    assert fanout(["a"], work)["a"].status is Status.FAILED


def test_stop_on_first_failure_leaves_later_hosts_untouched_and_says_why():
    touched: list[str] = []

    def work(name: str) -> None:
        touched.append(name)
        if name == "cp-1":
            raise CommandFailed(name, "kubeadm init", 1, "boom")

    result = fanout(["cp-1", "cp-2", "cp-3"], work, limit=1, stop_on_first_failure=True)
    assert touched == ["cp-1"]
    assert result["cp-2"].status is Status.NOT_REACHED
    assert result["cp-3"].message == "not started: stopped after cp-1 failed"


def test_an_unexpected_exception_is_kept_as_that_hosts_failure():
    result = fanout(["a", "b"], lambda n: 1 / 0 if n == "a" else n)
    assert result["a"].status is Status.FAILED and isinstance(result["a"].error, ZeroDivisionError)
    assert result["b"].ok


def test_raise_for_failures_carries_the_result_for_the_report():
    result = fanout(["a", "b"], lambda n: (_ for _ in ()).throw(CommandFailed(n, "x", 2, "")) if n == "b" else n)
    with pytest.raises(ExecutionFailed) as info:
        result.raise_for_failures("prepare hosts")
    assert str(info.value) == "prepare hosts: 1 succeeded, 1 failed, 0 not reached"
    assert "[b] failed: [b] `x` exited 2" in info.value.report.render_text()


def test_pool_gives_one_transport_per_host_and_closes_them_all():
    cluster = make_cluster(n_etcd=0, n_cp=1, n_workers=2)
    created: list[str] = []

    def factory(host):
        created.append(host.name)
        return LocalTransport(host=host.name)

    with TransportPool(cluster, factory=factory) as pool:
        result = pool.fanout(None, lambda t: t.run(Command(argv=["echo", t.host])).stdout.strip())
        again = pool.fanout(cluster.workers, lambda t: t.host)
        assert pool.get("cp-1") is pool.get(cluster.host("cp-1"))
    assert result.values() == {"cp-1": "cp-1", "worker-1": "worker-1", "worker-2": "worker-2"}
    assert again.ok
    assert sorted(created) == ["cp-1", "worker-1", "worker-2"]


def test_fanout_of_nothing_is_an_empty_success():
    assert fanout([], lambda x: x).ok
