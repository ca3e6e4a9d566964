"""The drain and re-enable programs kubeforge runs on a balancer, run here against the real haproxy
on loopback with the rendered haproxy.cfg (tests/unit/test_render_haproxy_failover.py's harness):
an API server restarted behind a drain costs no request, is re-enabled only once haproxy's own
checks see it up, a server the operator drained is left alone, and markers left by an interrupted
run are what the re-enable-all acts on."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from kubeforge.plan.endpoint.drain import admin_command
from tests.unit.test_render_haproxy_failover import ApiStandIn, ask, balanced, server_states  # noqa: F401

pytestmark = pytest.mark.timeout(90)


def run(action: str, server: str, sock: Path, marks: Path, wait: float = 20) -> subprocess.CompletedProcess:
    cmd = admin_command(action, server, wait, socket_path=str(sock), marker_dir=str(marks), unit=None,
                        sudo=False)
    return subprocess.run(["bash", "-c", cmd.script], capture_output=True, text=True, timeout=wait + 30, check=False)


def admin(sock: Path, line: str) -> str:
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(line.encode() + b"\n")
        return s.makefile().read().strip()


def test_a_drained_api_server_restarted_costs_no_request_and_is_re_enabled_once_haproxy_sees_it_up(balanced, tmp_path):
    front, sock, apis, ports, tls = balanced
    first, second = list(apis)
    marks = tmp_path / "drained"
    res = run("drain", first, sock, marks)
    assert res.returncode == 0, res.stderr
    assert (marks / first).exists() and server_states(sock)[first] == "DRAIN"
    answers: list[str | None] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            answers.append(ask(front))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # the restart: stopped, then back inside haproxy's fall window (3 checks), as a quick restart is
        apis[first].stop()
        time.sleep(1.0)
        apis[first] = ApiStandIn(first, ports[0], tls)
        started = time.monotonic()
        res = run("ready", first, sock, marks)
        took = time.monotonic() - started
    finally:
        stop.set()
        poller.join()
    assert res.returncode == 0, res.stderr
    assert "ready" in res.stdout and not (marks / first).exists()
    assert answers.count(None) == 0 and set(answers) == {second}, "nothing reached the drained server"
    assert took >= 1.0, "re-enabled only after haproxy's checks (rise 2, 1 s apart) saw it up again"
    assert server_states(sock)[first] == "UP"
    # back in the round robin
    deadline = time.monotonic() + 10
    while ask(front) != first:
        assert time.monotonic() < deadline, "the re-enabled server never answered through haproxy"


def test_re_enabling_a_server_whose_api_does_not_answer_fails_and_leaves_it_drained(balanced, tmp_path):
    front, sock, apis, _, _ = balanced
    first, second = list(apis)
    marks = tmp_path / "drained"
    assert run("drain", first, sock, marks).returncode == 0
    apis[first].stop()
    res = run("ready", first, sock, marks, wait=4)
    assert res.returncode == 1
    assert f"kube-apiserver/{first} did not pass haproxy's health check" in res.stderr
    assert (marks / first).exists(), "the marker stays: a later run re-enables it"
    assert server_states(sock)[first] == "DOWN" and ask(front) == second


def test_a_server_the_operator_drained_is_left_drained(balanced, tmp_path):
    _, sock, apis, _, _ = balanced
    first = next(iter(apis))
    marks = tmp_path / "drained"
    assert admin(sock, f"set server kube-apiserver/{first} state maint") == ""
    res = run("drain", first, sock, marks)
    assert res.returncode == 0 and "not by kubeforge: left as it is" in res.stdout
    assert not (marks / first).exists()
    res = run("ready", first, sock, marks)
    assert res.returncode == 0 and "nothing to do" in res.stdout
    assert server_states(sock)[first] == "MAINT"


def test_re_enable_all_acts_on_every_marked_server_and_on_no_other(balanced, tmp_path):
    """An interrupted run: drained, restarted, never re-enabled; the next run's first phase."""
    _, sock, apis, _, _ = balanced
    first, second = list(apis)
    marks = tmp_path / "drained"
    assert run("drain", first, sock, marks).returncode == 0
    assert admin(sock, f"set server kube-apiserver/{second} state drain") == ""  # the operator's
    res = run("ready", "*", sock, marks)
    assert res.returncode == 0, res.stderr
    assert server_states(sock) == {first: "UP", second: "DRAIN"}
    assert list(marks.iterdir()) == []


def test_an_unknown_server_is_one_clear_message(balanced, tmp_path):
    _, sock, _, _, _ = balanced
    res = run("drain", "cp-9", sock, tmp_path / "drained")
    assert res.returncode == 1 and res.stderr.strip() == "haproxy has no server kube-apiserver/cp-9"
