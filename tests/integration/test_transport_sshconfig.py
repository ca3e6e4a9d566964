"""~/.ssh/config (or ssh.sshConfig) read as ssh reads it, and ProxyJump over several hops, against
real sshd servers on loopback. Each config is first used by OpenSSH's own client."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from kubeforge.errors import TransportError
from kubeforge.model import Role, SshSettings
from kubeforge.transport import Command
from kubeforge.transport.policy import NotReached
from kubeforge.transport.ssh import SshTransport
from kubeforge.transport.sshconfig import route
from tests.factories import make_host
from tests.integration.sshd_helper import free_port, ssh_keys, sshd, sshd2, sudo_user  # noqa: F401 - fixtures


def _host(name: str, address: str, config: Path, kh: Path, **given) -> object:
    ssh = SshSettings(known_hosts=kh, ssh_config=config, use_agent=False, connect_retries=0, connect_timeout=5.0,
                      **given, given=frozenset(given))
    return make_host(name, address, Role.WORKER, ssh=ssh)


def _openssh(config: Path, kh: Path, alias: str) -> str:
    res = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={kh}",
                          "-o", "StrictHostKeyChecking=yes", alias, "echo", "ok"],
                         capture_output=True, text=True, timeout=30)
    return res.stdout.strip() or res.stderr.strip()


def _kubeforge(host) -> str:
    with SshTransport(host) as t:
        return t.run(Command(argv=["echo", "ok"])).stdout.strip()


@pytest.fixture
def kh(tmp_path, sshd, sshd2):  # noqa: F811
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line() + sshd2.known_hosts_line())
    return path


def test_hostname_user_port_and_identity_come_from_the_ssh_config(sshd, ssh_keys, kh, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    config.write_text(f"Host cp-1.site\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
                      f"  IdentityFile {ssh_keys}\n  IdentitiesOnly yes\n")
    assert _openssh(config, kh, "cp-1.site") == "ok"
    host = _host("cp-1", "cp-1.site", config, kh)
    hops = route(host)
    assert [(h.address, h.port, h.user, h.identity_files) for h in hops] == [("127.0.0.1", sshd.port, "root", (ssh_keys,))]
    assert _kubeforge(host) == "ok"


def test_what_the_inventory_writes_wins_over_the_ssh_config(sshd, ssh_keys, kh, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    config.write_text(f"Host *\n  HostName 127.0.0.1\n  Port {free_port()}\n  User nobody-kf\n  IdentityFile /nonexistent\n")
    host = _host("cp-1", "cp-1.site", config, kh, port=sshd.port, user="root", identity_file=ssh_keys)
    assert _kubeforge(host) == "ok"


def test_proxyjump_over_two_hops_from_the_ssh_config(sshd, sshd2, ssh_keys, kh, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    config.write_text(
        f"Host jump-a\n  HostName 127.0.0.1\n  Port {sshd2.port}\n  User root\n  IdentityFile {ssh_keys}\n"
        f"Host jump-b\n  HostName 127.0.0.1\n  Port {sshd2.port}\n  User root\n  IdentityFile {ssh_keys}\n"
        f"Host target\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n  IdentityFile {ssh_keys}\n"
        "  ProxyJump jump-a,jump-b\n"
        # ssh runs each hop as its own ssh -W, which reads the config file but not our -o options
        f"Host *\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
    )
    assert _openssh(config, kh, "target") == "ok"
    host = _host("w-1", "target", config, kh)
    assert [h.label for h in route(host)] == ["w-1 (jump host jump-a)", "w-1 (jump host jump-b)", "w-1"]
    with SshTransport(host) as t:
        assert t.run(Command(argv=["echo", "ok"])).stdout.strip() == "ok"
        assert len(t._hops) == 2 and all(h.is_authenticated() for h in t._hops)


def test_a_jump_host_that_cannot_reach_the_target_leaves_it_not_reached(sshd2, ssh_keys, kh, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    config.write_text(f"Host j\n  HostName 127.0.0.1\n  Port {sshd2.port}\n  User root\n  IdentityFile {ssh_keys}\n"
                      f"Host gone\n  HostName 127.0.0.1\n  Port {free_port()}\n  User root\n  ProxyJump j\n")
    with pytest.raises(NotReached, match="could not open a connection"):
        _kubeforge(_host("gone", "gone", config, kh))


def test_proxycommand_is_refused_rather_than_ignored(kh, tmp_path):
    config = tmp_path / "config"
    config.write_text("Host pc\n  ProxyCommand nc %h %p\n")
    with pytest.raises(TransportError, match="ProxyCommand"):
        route(_host("pc", "pc", config, kh))


def test_sshconfig_none_reads_no_config(kh, tmp_path):
    host = _host("x", "10.9.9.9", Path("none"), kh)
    assert [(h.address, h.port, h.user) for h in route(host)] == [("10.9.9.9", 22, "root")]
    assert dataclasses.replace(host.ssh, ssh_config=Path("none")).ssh_config == Path("none")


def test_a_login_user_from_the_ssh_config_gets_sudo_for_privileged_commands(sshd, ssh_keys, sudo_user, kh, tmp_path):  # noqa: F811
    config = tmp_path / "config"
    config.write_text(f"Host box\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sudo_user}\n  IdentityFile {ssh_keys}\n")
    with SshTransport(_host("box", "box", config, kh)) as t:
        assert t.run(Command(argv=["id", "-un"])).stdout.strip() == sudo_user
        assert t.run(Command(argv=["id", "-u"], sudo=True)).stdout.strip() == "0"
