"""Pytest fixtures for the lab (registered as a plugin by tests/conftest.py).

    @pytest.mark.lab
    def test_something(lab):                       # 3 machines, shared by the whole session
        lab.exec("lab-1", ["systemctl", "is-system-running"])

    @pytest.mark.lab
    def test_bigger(lab_factory):                  # its own lab, torn down at session end
        big = lab_factory({"etcd": 3, "control-plane": 2, "worker": 2})

Where the lab cannot run (not root, tools missing) these fixtures skip with the reason; under CI=true
they fail instead, so a CI runner that lost its lab never passes by skipping.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
from collections.abc import Callable, Iterator

import pytest

from tests.lab import claims
from tests.lab.lab import DEFAULT_KUBERNETES_VERSION, Lab
from tests.lab.layout import layout
from tests.lab.procs import Proc, start_time
from tests.need import skip_or_fail

TOOLS = ("systemd-nspawn", "mmdebstrap", "ip", "nsenter", "ssh", "ssh-keygen", "ssh-keyscan", "dpkg-scanpackages", "apt-get", "mount")
LAB_FIXTURES = {"lab", "lab_factory"}
LAB_GROUP = "lab"  # the pytest-xdist group every lab test joins (one worker runs them all, in order)


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (systemd-nspawn, bridges, mounts); run as root or via .ci/run"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"the lab needs {', '.join(missing)} (apt-get install openssh-client mmdebstrap systemd-container iproute2 dpkg-dev util-linux)"
    return None


def this_process() -> Proc:
    return Proc(os.getpid(), start_time(os.getpid()) or "")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the group marks (its worker hook names the group)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # a test that asks for a lab is a lab test, whether or not its author remembered the marker
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
        # Under pytest-xdist (`-n 2 --dist loadgroup`, the README's test command) every lab test goes
        # to one worker, in order, so labs never run two at once and module fixtures stay shared;
        # the other worker takes the tests that need no lab, on the CPU the lab leaves idle.
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.xdist_group(LAB_GROUP))



def _sigterm_as_exit() -> None:
    """A CI timeout sends SIGTERM; turn it into KeyboardInterrupt so finalizers and atexit still tear
    down. Not SystemExit: pytest records that as one failed test and goes on with the next."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def lab_factory() -> Callable[..., Lab]:
    """Boot a lab of any layout: ``lab_factory(roles, persistent=(), kubernetes_version=...,
    endpoint_mode="auto", with_mirror=True, egress=True, light=False)``; each gets its own bridge and
    subnet (``egress=False``: no way out; ``light=True``: a fleet's light machines; tests/lab/lab.py)."""
    reason = lab_unavailable()
    if reason:
        skip_or_fail(reason)
    _sigterm_as_exit()
    booted = _BOOTED

    def teardown(lab: Lab, fd: int) -> None:
        try:
            lab.down()
        finally:
            claims.release(fd)

    def make(roles=None, *, persistent=(), kubernetes_version: str | None = DEFAULT_KUBERNETES_VERSION,
             endpoint_mode: str = "auto", with_mirror: bool = True, egress: bool = True, shared: bool = False,
             light: bool = False) -> Lab:
        index, fd = claims.claim()
        lab = Lab(layout(roles, persistent=persistent), index=index, kubernetes_version=kubernetes_version,
                  endpoint_mode=endpoint_mode, with_mirror=with_mirror, egress=egress, light=light,
                  log=lambda *_: None, owner=this_process())
        booted.append((lab, fd))
        if shared:
            _SHARED.add(id(lab))
        atexit.register(lab.down)  # after an interrupted session; a second down is harmless
        try:
            lab.up()
        except Exception as e:  # noqa: BLE001 - the runner can host a lab, so a failed boot is a failure, never a skip
            pytest.fail(f"lab {lab.id.name} did not boot: {e}", pytrace=False)
        return lab

    _TEARDOWN.append(teardown)
    try:
        yield make
    finally:
        _TEARDOWN.clear()
        for lab, fd in reversed(booted):
            teardown(lab, fd)
        booted.clear()


# Labs booted by a module's tests end with that module (an idle lab still runs systemd, etcd and the
# simulator's loops on the runner's 2 cores), except the session's shared `lab`.
_BOOTED: list[tuple[Lab, int]] = []
_SHARED: set[int] = set()
_TEARDOWN: list[Callable[[Lab, int], None]] = []


@pytest.fixture(scope="module", autouse=True)
def _labs_end_with_their_module() -> Iterator[None]:
    start = len(_BOOTED)
    yield
    if not _TEARDOWN:
        return
    mine = [entry for entry in _BOOTED[start:] if id(entry[0]) not in _SHARED]
    _BOOTED[:] = [entry for entry in _BOOTED if not any(entry is m for m in mine)]
    for lab, fd in reversed(mine):
        _TEARDOWN[0](lab, fd)


@pytest.fixture(scope="session")
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    """Three machines (lab-1 control-plane+etcd, lab-2 and lab-3 etcd+worker), shared by the session.
    A test that breaks a machine puts it back, or boots its own with lab_factory."""
    return lab_factory(shared=True)
