"""The rendered balancer configs pass the real tools' own checks (Debian's haproxy and keepalived)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from kubeforge.render import render_host
from tests.golden.cases import CASES


def tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/sbin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed (apt-get install haproxy keepalived)")
    return path


def lb_files(interface: str) -> dict[str, bytes]:
    c = CASES["stacked-haproxy"]()
    c = dataclasses.replace(c, endpoint=dataclasses.replace(c.endpoint, interface=interface))
    return {f.path: f.content for f in render_host(c, c.load_balancers[0])}


def test_rendered_haproxy_config_passes_haproxy_check(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_bytes(lb_files("eth0")["/etc/haproxy/haproxy.cfg"])
    result = subprocess.run([tool("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_rendered_keepalived_config_passes_keepalived_config_test(tmp_path: Path) -> None:
    # keepalived refuses loopback for VRRP and checks the interface exists: use a real NIC here.
    nics = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo" and (p / "address").exists())
    if not nics:
        pytest.fail("no network interface besides lo to check the keepalived config against")
    # prefer eth0: the lab's veths come and go while other tests run
    files = lb_files("eth0" if "eth0" in nics else nics[0])
    script = tmp_path / "check-haproxy.sh"
    script.write_bytes(files["/etc/keepalived/check-haproxy.sh"])
    script.chmod(0o755)
    conf = tmp_path / "keepalived.conf"
    conf.write_text(files["/etc/keepalived/keepalived.conf"].decode().replace("/etc/keepalived/check-haproxy.sh", str(script)))
    log = tmp_path / "check.log"
    result = subprocess.run(
        [tool("keepalived"), f"--config-test={log}", "-f", str(conf)], capture_output=True, text=True, timeout=30
    )
    report = log.read_text() if log.exists() else ""
    assert result.returncode == 0, report + result.stderr
    assert "Unknown keyword" not in report


def exec_start_pre(dropin: bytes, address: str, tries: int) -> list[str]:
    """The drop-in's ExecStartPre as systemd runs it: "$$" unescaped to "$"; the host's address and
    the number of tries swapped for the test's."""
    import shlex

    line = next(x for x in dropin.decode().splitlines() if x.startswith("ExecStartPre="))
    argv = shlex.split(line.removeprefix("ExecStartPre=").replace("$$", "$"))
    argv[-1] = argv[-1].replace("10.77.4.11", address).replace("-ge 120", f"-ge {tries}")
    return argv


def test_keepalived_waits_for_its_unicast_source_address_before_it_starts() -> None:
    dropin = lb_files("eth0")["/etc/systemd/system/keepalived.service.d/10-kubeforge-address.conf"]
    assert "After=network-online.target" in dropin.decode() and "Restart=on-failure" in dropin.decode()
    # the address is there (loopback's): the wait ends at once
    held = subprocess.run(exec_start_pre(dropin, "127.0.0.1", 120), capture_output=True, text=True, timeout=30)
    assert held.returncode == 0, held.stderr
    # an address this machine does not hold (TEST-NET-3): it gives up after its tries and says why
    missing = subprocess.run(exec_start_pre(dropin, "203.0.113.254", 2), capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert "203.0.113.254 is not configured on this host" in missing.stderr


def test_keepalived_waits_for_the_canonical_spelling_of_an_ipv6_source_address() -> None:
    c = CASES["stacked-haproxy"]()
    lb = dataclasses.replace(c.load_balancers[0], internal_address="fd00:0:0:0:0:0:0:11")
    files = {f.path: f.content for f in render_host(c, lb)}
    dropin = files["/etc/systemd/system/keepalived.service.d/10-kubeforge-address.conf"].decode()
    assert 'grep -Fq " fd00::11/"' in dropin  # how `ip -o addr` prints it
