"""A private, real OpenSSH server on 127.0.0.1 for transport tests (and bench/fanout.py).

Each ``Sshd`` has its own generated host key, accepts one generated client key for every user, and
listens on a free loopback port. Needs root (sshd privilege separation) and /usr/sbin/sshd.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubeforge.model import Bastion, HostKeyPolicy, Role, SshSettings
from tests.factories import make_host
from tests.need import skip_or_fail

SSHD = "/usr/sbin/sshd"
SUDO_USER = "kftest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"sshd did not listen on 127.0.0.1:{port}")


@dataclass
class Sshd:
    """One running sshd. ``client_key`` logs in as root or SUDO_USER."""

    workdir: Path
    client_key: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # more host keys (e.g. "rsa") and sshd_config lines (e.g. HostCertificate) for host key tests
    extra_key_kinds: tuple[str, ...] = ()
    extra_config: str = ""

    @property
    def host_pub(self) -> str:
        """``"ssh-ed25519 AAAA..."`` without the comment, as known_hosts and hostKey hold it."""
        return self.host_pub_of("ed25519")

    def host_pub_of(self, kind: str) -> str:
        return " ".join((self.workdir / f"host_{kind}.pub").read_text().split()[:2])

    def start(self) -> Sshd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for kind in ("ed25519", *self.extra_key_kinds):
            if not (self.workdir / f"host_{kind}").exists():
                keygen(self.workdir / f"host_{kind}", kind)
        host_keys = "".join(f"HostKey {self.workdir}/host_{kind}\n" for kind in ("ed25519", *self.extra_key_kinds))
        shutil.copy(f"{self.client_key}.pub", self.workdir / "authorized_keys")
        (self.workdir / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"{host_keys}"
            f"AuthorizedKeysFile {self.workdir}/authorized_keys .ssh/authorized_keys\n"
            f"PidFile {self.workdir}/sshd.pid\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
            "MaxStartups 200\nMaxSessions 50\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n"
            f"{self.extra_config}"
        )
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.workdir / "sshd_config")],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sshd.log", "ab"),
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def known_hosts_line(self, address: str = "127.0.0.1") -> str:
        return f"[{address}]:{self.port} {self.host_pub}\n"

    def settings(self, known_hosts: Path, *, user: str = "root", **kw) -> SshSettings:
        return SshSettings(
            user=user, port=self.port, identity_file=kw.pop("identity_file", self.client_key), known_hosts=known_hosts,
            use_agent=kw.pop("use_agent", False), connect_retries=kw.pop("connect_retries", 0), connect_timeout=kw.pop("connect_timeout", 5.0),
            host_key_policy=kw.pop("host_key_policy", HostKeyPolicy.STRICT), **kw,
        )

    def host(self, name: str, known_hosts: Path, *, address: str = "127.0.0.1", host_key: str | None = None, **kw):
        return make_host(name, address, Role.WORKER, ssh=self.settings(known_hosts, **kw), host_key=host_key)

    def as_bastion(self) -> Bastion:
        return Bastion(address="127.0.0.1", port=self.port, user="root")


def can_run_sshd() -> str | None:
    """None when this machine can host the test sshd, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the test sshd needs root"
    if not Path(SSHD).exists():
        return "openssh-server is not installed"
    return None


def ensure_sudo_user(client_key: Path) -> bool:
    """Create SUDO_USER with passwordless sudo, logging in with ``client_key`` (idempotent).
    False when sudo is missing."""
    if shutil.which("sudo") is None:
        return False
    if subprocess.run(["id", SUDO_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER], check=True)
    # useradd leaves the password locked ("!"), and sshd without PAM refuses locked accounts even
    # for key logins; "*" means "no password" without being locked.
    subprocess.run(["usermod", "-p", "*", SUDO_USER], check=True)
    # sshd reads authorized_keys as the user, who cannot see into the test's private temp dirs.
    home = Path(f"/home/{SUDO_USER}")
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    shutil.copy(f"{client_key}.pub", home / ".ssh" / "authorized_keys")
    subprocess.run(["chown", "-R", f"{SUDO_USER}:{SUDO_USER}", str(home / ".ssh")], check=True)
    Path(f"/etc/sudoers.d/{SUDO_USER}").write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")
    os.chmod(f"/etc/sudoers.d/{SUDO_USER}", 0o440)
    return True


def remove_sudo_user() -> None:
    Path(f"/etc/sudoers.d/{SUDO_USER}").unlink(missing_ok=True)
    subprocess.run(["userdel", "--remove", SUDO_USER], capture_output=True)


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sshkeys")
    return keygen(d / "id_ed25519")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, ssh_keys):
    reason = can_run_sshd()
    if reason:
        skip_or_fail(reason)
    server = Sshd(tmp_path_factory.mktemp("sshd"), ssh_keys).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd2(tmp_path_factory, ssh_keys):
    """A second server: the bastion in ProxyJump tests."""
    reason = can_run_sshd()
    if reason:
        skip_or_fail(reason)
    server = Sshd(tmp_path_factory.mktemp("sshd2"), ssh_keys).start()
    yield server
    server.stop()


@pytest.fixture
def known_hosts(tmp_path, sshd) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path


@pytest.fixture(scope="session")
def sudo_user(ssh_keys):
    if not ensure_sudo_user(ssh_keys):
        skip_or_fail("sudo is not installed on this machine (apt-get install sudo)")
    yield SUDO_USER
    remove_sudo_user()
