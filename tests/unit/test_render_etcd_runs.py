"""The rendered etcd.env drives the real etcd binary (Debian's 3.4): a one-member TLS cluster on
loopback starts from it and answers a health check with client-certificate auth."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.model import EtcdTopology
from kubeforge.pki import ensure_pki, host_files
from kubeforge.render import render_host
from tests.factories import make_cluster

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_of(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value.strip('"')
    return out


@pytest.mark.slow
def test_rendered_etcd_env_starts_a_real_tls_member_that_answers_health_checks(tmp_path: Path) -> None:
    if not (os.path.exists(ETCD) and os.path.exists(ETCDCTL)):
        pytest.fail("etcd-server and etcd-client must be installed (apt-get install etcd-server etcd-client)")
    base = make_cluster(tmp_path, topology=EtcdTopology.EXTERNAL, n_etcd=1, n_cp=1, n_workers=0)
    member = dataclasses.replace(base.hosts[0], address="127.0.0.1", internal_address="127.0.0.1")
    client, peer = free_port(), free_port()
    cluster = dataclasses.replace(
        base,
        hosts=(member, *base.hosts[1:]),
        etcd=dataclasses.replace(base.etcd, data_dir=str(tmp_path / "data"), client_port=client, peer_port=peer),
    )
    pki = ensure_pki(cluster).bundle
    root = tmp_path / "root"
    files = render_host(cluster, member, extra_files=host_files(cluster, pki, member))
    for f in files:
        target = root / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content)
        target.chmod(f.mode)
    # The rendered paths are absolute; point them into the sandbox, and move metrics off the
    # well-known port so the test never collides with another etcd on this machine.
    text = (root / "etc/etcd/etcd.env").read_text().replace("/etc/etcd/pki", str(root / "etc/etcd/pki"))
    text = text.replace("http://127.0.0.1:2381", f"http://127.0.0.1:{free_port()}")
    env = {"PATH": "/usr/bin:/bin", **env_of(text)}
    proc = subprocess.Popen([ETCD], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pki_dir = root / "etc/etcd/pki"
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            health = subprocess.run(
                [ETCDCTL, f"--endpoints=https://127.0.0.1:{client}", f"--cacert={pki_dir}/ca.crt",
                 f"--cert={pki_dir}/healthcheck-client.crt", f"--key={pki_dir}/healthcheck-client.key",
                 "endpoint", "health"],
                capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}, timeout=10,
            )
            if health.returncode == 0 or proc.poll() is not None:
                break
            time.sleep(0.3)
        assert proc.poll() is None, f"etcd exited: {proc.stdout.read()[-3000:] if proc.stdout else ''}"
        assert health is not None and health.returncode == 0, health.stderr if health else "no check ran"
        assert "is healthy" in health.stdout + health.stderr
        # Without a client certificate the member refuses us: ETCD_CLIENT_CERT_AUTH took effect.
        anonymous = subprocess.run(
            [ETCDCTL, f"--endpoints=https://127.0.0.1:{client}", f"--cacert={pki_dir}/ca.crt",
             "--command-timeout=3s", "endpoint", "health"],
            capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}, timeout=20,
        )
        assert anonymous.returncode != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
