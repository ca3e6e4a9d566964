"""Every command that touches hosts exits 5 when they cannot be reached, whatever it was about to do
(read facts, check, plan, change, back up), with the error object in json. The hosts are loopback
addresses on a port where nothing listens: connection refused, nothing else on the network.

`etcd restore` is not among them: with no backup to restore it stops (exit 3) before any host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubeforge.inventory.starter import StarterHost, starter_text

REPO = Path(__file__).resolve().parents[2]
HOST_COMMANDS = {
    "facts": [],
    "preflight": [],
    "plan up": [],
    "plan upgrade": ["--to", "1.35.1"],
    "up": ["--yes"],
    "reset": ["--yes"],
    "node remove": ["worker-1", "--yes"],
    "node replace": ["worker-1", "--yes"],
    "os upgrade": ["--yes"],
    "upgrade": ["--to", "1.35.1", "--yes"],
    "etcd status": [],
    "etcd backup": [],
    "etcd install": ["--yes"],
    "etcd members": ["--yes"],
    "etcd upgrade": ["--to", "3.6.5", "--yes"],
    "kubeconfig": [],
    "certs check": [],
    "certs renew": ["--yes"],
    "certs rotate-ca": ["--ca", "etcd", "--yes"],
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    d = tmp_path_factory.mktemp("unreachable")
    hosts = [StarterHost(f"etcd-{i}", f"127.0.0.{10 + i}", ("etcd",)) for i in (1, 2, 3)]
    hosts += [StarterHost("cp-1", "127.0.0.21", ("control-plane",)), StarterHost("worker-1", "127.0.0.31", ("worker",))]
    text = starter_text(name="gone", hosts=hosts, kubernetes_version="1.34.2")
    text = text.replace("    hostKeyPolicy: accept-new", f"    hostKeyPolicy: accept-new\n    port: {closed_port()}\n"
                        "    connectRetries: 0\n    connectTimeoutSeconds: 5")
    inv = d / "inventory.yaml"
    inv.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(d)}

    def one(path: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubeforge", *path.split(), "-i", str(inv), *HOST_COMMANDS[path],
                               "-o", "json"], capture_output=True, text=True, timeout=300, cwd=d, env=env,
                              stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(HOST_COMMANDS, pool.map(one, HOST_COMMANDS), strict=True))


def test_the_list_holds_every_command_that_touches_hosts():
    from tests.unit.test_cli_output import COMMANDS, NO_INVENTORY

    local = {"validate", "render", "etcd restore"}
    assert set(COMMANDS) - NO_INVENTORY - local == set(HOST_COMMANDS)


@pytest.mark.parametrize("path", sorted(HOST_COMMANDS))
def test_an_unreachable_host_exits_5_with_an_error_object(path, results):
    res = results[path]
    assert res.returncode == 5, f"{path}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    error = json.loads(res.stdout)["error"]
    assert error["exit_code"] == 5 and error["log"] and Path(error["log"]).is_file()
    assert "could not connect" in res.stderr or "unreachable: " in res.stderr, res.stderr  # names who
    assert "Traceback" not in res.stderr
