"""known_hosts files that OpenSSH accepts are accepted, the ones it refuses are refused (exit 5),
against a real sshd on loopback that has ed25519 and RSA host keys and a CA-signed host certificate.

Each case is first checked with OpenSSH's own client, so the test states what ssh does, then with
kubeforge, as the transport and through the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge.errors import HostKeyError
from kubeforge.transport import Command
from kubeforge.transport.ssh import SshTransport
from tests.integration.sshd_helper import Sshd, can_run_sshd, keygen, ssh_keys  # noqa: F401 - fixture
from tests.need import skip_or_fail

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("ca") / "host_ca")


@pytest.fixture(scope="module")
def certified(tmp_path_factory, ssh_keys, ca):  # noqa: F811
    """An sshd with ed25519 + RSA host keys and an ed25519 host certificate signed by ``ca``."""
    reason = can_run_sshd()
    if reason:
        skip_or_fail(reason)
    work = tmp_path_factory.mktemp("sshd-cert")
    keygen(work / "host_ed25519")
    keygen(work / "host_rsa", "rsa")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "kf-test-host", "-h", "-n", "127.0.0.1",
                    "-V", "-5m:+1h", str(work / "host_ed25519.pub")], check=True)
    server = Sshd(work, ssh_keys, extra_key_kinds=("rsa",),
                  extra_config=f"HostCertificate {work}/host_ed25519-cert.pub\n").start()
    yield server
    server.stop()


def _openssh_accepts(server: Sshd, kh: Path, client_key: Path) -> bool:
    res = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(server.port), "-i", str(client_key), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={kh}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "root@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=30,
    )
    return res.returncode == 0


def _kubeforge_runs(server: Sshd, kh: Path) -> str:
    with SshTransport(server.host("h1", kh)) as t:
        return t.run(Command(argv=["echo", "ok"])).stdout.strip()


def _cli_exit(server: Sshd, kh: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: kh}\nspec:\n"
        "  kubernetesVersion: 1.34.2\n  controlPlaneEndpoint: {mode: none}\n"
        "  allowWorkloadsOnControlPlanes: true\n"
        f"  ssh: {{user: root, port: {server.port}, identityFile: {server.client_key}, knownHosts: {kh}, "
        "connectRetries: 0, useAgent: false}\n"
        "  hosts:\n    - {name: node-1, address: 127.0.0.1, roles: [control-plane, worker]}\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "kubeforge", "facts", "-i", str(inv)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_known_hosts_with_only_the_rsa_key_is_accepted_as_openssh_does(certified, ssh_keys, tmp_path):  # noqa: F811
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{certified.port} {certified.host_pub_of('rsa')}\n")
    assert _openssh_accepts(certified, kh, ssh_keys)
    assert _kubeforge_runs(certified, kh) == "ok"


def test_a_host_certificate_signed_by_a_cert_authority_line_is_accepted(certified, ca, ssh_keys, tmp_path):  # noqa: F811
    kh = tmp_path / "known_hosts"
    ca_pub = " ".join(Path(f"{ca}.pub").read_text().split()[:2])
    kh.write_text(f"@cert-authority [127.0.0.1]:{certified.port} {ca_pub}\n")
    assert _openssh_accepts(certified, kh, ssh_keys)
    assert _kubeforge_runs(certified, kh) == "ok"


def test_a_certificate_from_another_ca_is_refused(certified, ssh_keys, tmp_path):  # noqa: F811
    other = keygen(tmp_path / "other_ca")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@cert-authority * {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    assert not _openssh_accepts(certified, kh, ssh_keys)
    with pytest.raises(HostKeyError) as info:
        _kubeforge_runs(certified, kh)
    assert "not list as @cert-authority" in str(info.value) and info.value.exit_code == 5


def test_a_malformed_line_is_skipped_with_one_warning_naming_it(certified, ssh_keys, tmp_path, caplog):  # noqa: F811
    kh = tmp_path / "known_hosts"
    kh.write_text(f"garbage.example ssh-ed25519 AAAAnot-base64!!\n[127.0.0.1]:{certified.port} {certified.host_pub}\n")
    assert _openssh_accepts(certified, kh, ssh_keys)
    assert _kubeforge_runs(certified, kh) == "ok"
    assert f"{kh}:1: line skipped" in caplog.text


def test_a_revoked_key_is_refused_with_exit_5(certified, ssh_keys, tmp_path):  # noqa: F811
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {certified.host_pub}\n[127.0.0.1]:{certified.port} {certified.host_pub}\n")
    assert not _openssh_accepts(certified, kh, ssh_keys)
    with pytest.raises(HostKeyError) as info:
        _kubeforge_runs(certified, kh)
    assert "@revoked" in str(info.value)
    res = _cli_exit(certified, kh, tmp_path)
    assert res.returncode == 5, res.stdout + res.stderr
    assert "@revoked" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_a_changed_key_is_refused_with_exit_5(certified, ssh_keys, tmp_path):  # noqa: F811
    stranger = keygen(tmp_path / "stranger")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{certified.port} {' '.join(Path(f'{stranger}.pub').read_text().split()[:2])}\n")
    assert not _openssh_accepts(certified, kh, ssh_keys)
    res = _cli_exit(certified, kh, tmp_path)
    assert res.returncode == 5, res.stdout + res.stderr
    assert "HOST KEY CHANGED" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_an_unknown_key_says_how_to_pin_it_with_the_fingerprint(certified, tmp_path):
    kh = tmp_path / "known_hosts"
    res = _cli_exit(certified, kh, tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 5, out
    assert "ssh-keyscan" in out and "hostKey:" in out and "accept-new" in out and "SHA256:" in out


def test_hosts_that_accept_tcp_and_never_speak_ssh_give_one_line_each_and_no_traceback(tmp_path):
    import socket

    listeners = []
    for i in range(3):  # each host its own silent listener on loopback (127.0.0.1-3), never accepted from
        s = socket.socket()
        s.bind((f"127.0.0.{i + 1}", 0))
        s.listen(16)
        listeners.append(s)
    ports = [s.getsockname()[1] for s in listeners]
    inv = tmp_path / "inv.yaml"
    hosts = "".join(f"    - {{name: w-{i}, address: 127.0.0.{i + 1}, ssh: {{port: {ports[i]}}}, roles: [worker]}}\n"
                    for i in (1, 2))
    inv.write_text(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: mute}\nspec:\n"
        "  kubernetesVersion: 1.34.2\n  controlPlaneEndpoint: {mode: none}\n  allowWorkloadsOnControlPlanes: true\n"
        f"  ssh: {{user: root, port: {ports[0]}, connectTimeoutSeconds: 2, connectRetries: 0, useAgent: false, "
        f"knownHosts: {tmp_path}/kh}}\n"
        "  hosts:\n    - {name: cp-1, address: 127.0.0.1, roles: [control-plane, worker]}\n" + hosts
    )
    try:
        res = subprocess.run([sys.executable, "-m", "kubeforge", "facts", "-i", str(inv)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)})
    finally:
        for s in listeners:
            s.close()
    out = res.stdout + res.stderr
    assert res.returncode == 5, out
    assert "Traceback" not in res.stderr and "paramiko" not in res.stderr, res.stderr
    for host in ("cp-1", "w-1", "w-2"):
        assert any(host in line and "does not speak SSH" in line for line in out.splitlines()), out
