"""The generated etcd certificates work in a real etcd cluster (Debian's etcd-server) on loopback
addresses: mutual TLS between peers and for clients, certificates from another CA refused."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.model import Role
from kubeforge.pki import ensure_pki
from tests.factories import make_cluster, make_host

ETCD, ETCDCTL = shutil.which("etcd"), shutil.which("etcdctl")


MEMBERS = {"etcd-1": "127.0.0.1", "etcd-2": "127.0.0.2", "etcd-3": "127.0.0.3"}


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory):
    """Three members on three loopback addresses, so each peer checks the others' IP SANs."""
    if not (ETCD and ETCDCTL):
        pytest.fail("etcd and etcdctl are part of this machine's setup (apt: etcd-server, etcd-client)")
    tmp = tmp_path_factory.mktemp("etcd")
    base = make_cluster(tmp, n_etcd=3)
    members = tuple(make_host(name, addr, Role.ETCD) for name, addr in MEMBERS.items())
    cluster = dataclasses.replace(base, hosts=(*members, *base.hosts[3:]))
    result = ensure_pki(cluster, now=datetime.now(UTC))
    pki = cluster.pki_dir
    ports = {n: (free_port(a), free_port(a)) for n, a in MEMBERS.items()}
    initial = ",".join(f"{n}=https://{MEMBERS[n]}:{ports[n][1]}" for n in MEMBERS)
    procs, logs = [], []
    for name, addr in MEMBERS.items():
        client_port, peer_port = ports[name]
        data = tmp / name
        data.mkdir(mode=0o700)
        m = pki / "etcd/members" / name
        logs.append(open(tmp / f"{name}.log", "wb"))
        procs.append(subprocess.Popen(
            [
                ETCD, "--name", name, "--data-dir", str(data), "--initial-cluster", initial,
                "--listen-client-urls", f"https://{addr}:{client_port}",
                "--advertise-client-urls", f"https://{addr}:{client_port}",
                "--listen-peer-urls", f"https://{addr}:{peer_port}",
                "--initial-advertise-peer-urls", f"https://{addr}:{peer_port}",
                "--client-cert-auth", "--trusted-ca-file", str(pki / "etcd/ca.crt"),
                "--cert-file", str(m / "server.crt"), "--key-file", str(m / "server.key"),
                "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki / "etcd/ca.crt"),
                "--peer-cert-file", str(m / "peer.crt"), "--peer-key-file", str(m / "peer.key"),
            ],
            stdout=logs[-1], stderr=subprocess.STDOUT,
        ))
    ctl = Etcdctl(pki, f"https://127.0.0.1:{ports['etcd-1'][0]}")
    deadline = time.monotonic() + 30
    try:
        while ctl("healthcheck-client", "endpoint", "health", "--cluster").returncode != 0:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                tails = "\n".join((tmp / f"{n}.log").read_text()[-1500:] for n in MEMBERS)
                pytest.fail("etcd cluster did not become healthy:\n" + tails)
            time.sleep(0.2)
        yield ctl, result
    finally:
        # SIGKILL: the data is thrown away, and a graceful stop spends seconds on leader transfer.
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)
        for f in logs:
            f.close()


class Etcdctl:
    def __init__(self, pki: Path, endpoint: str) -> None:
        self.pki, self.endpoint = pki, endpoint

    def __call__(self, client: str, *args: str, cacert: str = "etcd/ca.crt") -> subprocess.CompletedProcess:
        cert = {"healthcheck-client": "etcd/healthcheck-client", "apiserver-etcd-client": "apiserver-etcd-client"}[client]
        return subprocess.run(
            [ETCDCTL, "--endpoints", self.endpoint, "--dial-timeout", "2s", "--command-timeout", "3s",
             "--cacert", str(self.pki / cacert),
             "--cert", str(self.pki / f"{cert}.crt"), "--key", str(self.pki / f"{cert}.key"), *args],
            capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
        )


def test_three_members_form_a_healthy_cluster_over_mutual_peer_tls(etcd_cluster):
    ctl, _ = etcd_cluster
    out = ctl("healthcheck-client", "endpoint", "health", "--cluster")
    assert out.returncode == 0 and (out.stdout + out.stderr).count("is healthy") == 3
    members = ctl("healthcheck-client", "member", "list")
    assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == sorted(MEMBERS)
    assert all(", started, " in line for line in members.stdout.splitlines())


def test_apiserver_etcd_client_can_write_and_read(etcd_cluster):
    ctl, _ = etcd_cluster
    assert ctl("apiserver-etcd-client", "put", "/kubeforge/probe", "ok").returncode == 0
    out = ctl("apiserver-etcd-client", "get", "/kubeforge/probe", "--print-value-only")
    assert out.stdout.strip() == "ok"


def get_version(ctl: Etcdctl, cert: str) -> bytes:
    """GET /version over TLS presenting ``cert``; the server is verified against the etcd CA."""
    port = int(ctl.endpoint.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(ctl.pki / "etcd/ca.crt"))
    ctx.load_cert_chain(ctl.pki / f"{cert}.crt", ctl.pki / f"{cert}.key")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return tls.recv(1024)


def test_a_client_certificate_from_another_ca_is_refused(etcd_cluster):
    ctl, _ = etcd_cluster
    assert get_version(ctl, "apiserver-etcd-client").startswith(b"HTTP/1.1 200")
    # With TLS 1.3 the server's verdict on the client certificate comes after the handshake: etcd
    # drops the connection.
    with pytest.raises(ssl.SSLError):
        get_version(ctl, "front-proxy-ca")


def tls_context(pki: Path, cafile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / cafile))
    ctx.load_cert_chain(pki / "etcd/healthcheck-client.crt", pki / "etcd/healthcheck-client.key")
    return ctx


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_the_server_certificate_verifies_for_the_members_loopback_names(etcd_cluster, name):
    ctl, _ = etcd_cluster
    port = int(ctl.endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_context(ctl.pki, "etcd/ca.crt").wrap_socket(raw, server_hostname=name) as tls:
            assert tls.getpeercert()["subject"] == ((("commonName", "etcd-1"),),)


def test_a_client_trusting_another_ca_refuses_the_server(etcd_cluster):
    ctl, _ = etcd_cluster
    port = int(ctl.endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_context(ctl.pki, "ca.crt").wrap_socket(raw, server_hostname="localhost")
