"""The lab's bridge and the readiness checks done from the runner over it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab.paths import BRIDGE_PREFIX, LabError


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise LabError(f"ip {' '.join(argv)}: {res.stderr.strip()}")
    return res


def bridge_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def create_bridge(name: str, gateway: str, prefixlen: int) -> None:
    if bridge_exists(name):
        delete_bridge(name)
    # A bridge without an address of its own takes the lowest of its ports' and changes it when that
    # machine stops: the others keep the old one for the gateway in their ARP caches and lose the
    # runner for ~30 s (a lab-2 command timed out while lab-3 was powered off). A set address stays.
    _ip("link", "add", name, "type", "bridge")
    _ip("link", "set", "dev", name, "address", bridge_mac(name))
    _ip("addr", "add", f"{gateway}/{prefixlen}", "dev", name)
    _ip("link", "set", name, "up")


def bridge_mac(name: str) -> str:
    """A fixed, locally administered unicast address derived from the bridge's name."""
    import hashlib

    return ":".join(["02", *(f"{b:02x}" for b in hashlib.sha256(name.encode()).digest()[:5])])


def delete_bridge(name: str) -> None:
    if bridge_exists(name):
        _ip("link", "del", name, check=False)


def lab_bridges() -> list[str]:
    out = _ip("-o", "link", "show", "type", "bridge", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(BRIDGE_PREFIX)]


def ssh_banner(address: str, port: int = 22, timeout: float = 1.0) -> str | None:
    """The SSH server's identification line, or None when nothing answers yet."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = s.recv(256)
    except OSError:
        return None
    line = data.decode(errors="replace").strip()
    return line if line.startswith("SSH-") else None


def wait_for_ssh(targets: dict[str, str], timeout: float, logs: dict[str, Path] | None = None) -> None:
    """Wait until every machine (name -> address) shows an SSH banner; one error naming the slow ones."""
    pending = dict(targets)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, addr in list(pending.items()):
            if ssh_banner(addr, timeout=0.5):
                del pending[name]
        if pending:
            time.sleep(0.1)
    if pending:
        detail = []
        for name, addr in pending.items():
            tail = ""
            if logs and name in logs and logs[name].exists():
                tail = "\n    " + "\n    ".join(logs[name].read_text(errors="replace").splitlines()[-8:])
            detail.append(f"  {name} ({addr}:22): no SSH banner after {timeout:.0f}s; console {logs.get(name) if logs else '-'}{tail}")
        raise LabError("lab machines did not come up:\n" + "\n".join(detail))


def scan_host_keys(addresses: Sequence[str], timeout: float = 15.0) -> list[str]:
    """known_hosts lines with each machine's real host keys, read from its sshd over the bridge."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-t", "ed25519,ecdsa", *addresses], capture_output=True, text=True
        )
        lines = sorted(line for line in res.stdout.splitlines() if line and not line.startswith("#"))
        missing = [a for a in addresses if not any(line.split()[0] == a for line in lines)]
        if not missing:
            return lines
        if time.monotonic() > deadline:
            raise LabError(f"ssh-keyscan got no host key from {', '.join(missing)}: {res.stderr.strip()[-500:]}")
        time.sleep(0.3)


def _iptables_in(pid: int, *argv: str) -> subprocess.CompletedProcess:
    # the runner's iptables, run in the machine's network namespace (the lab image has none)
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "iptables", *argv], capture_output=True, text=True)


def refuse_ssh_from(pid: int, source: str) -> None:
    """Inside one machine's netns: refuse SSH connections from ``source`` (the runner's address on
    the bridge), so the machine is reachable only through another lab machine (a bastion). Everything
    else (the mirror, the API, the other machines) stays open. Reset rather than drop, so a
    connection that wrongly skips the bastion fails at once rather than after a timeout."""
    rule = ["INPUT", "-s", source, "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]
    if _iptables_in(pid, "-C", *rule).returncode == 0:
        return
    res = _iptables_in(pid, "-I", *rule)
    if res.returncode != 0:
        raise LabError(f"iptables in the netns of pid {pid}: {res.stderr.strip()}")


def allow_ssh_from(pid: int, source: str) -> None:
    rule = ["INPUT", "-s", source, "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]
    while _iptables_in(pid, "-C", *rule).returncode == 0:
        _iptables_in(pid, "-D", *rule)


def no_egress_rules(gateway: str) -> list[list[str]]:
    """iptables OUTPUT rules for a machine with no way out: it answers SSH from the operator's side
    (the runner, at the bridge's ``gateway`` address) and opens nothing towards it: not the lab's
    package mirror, not the runner's sshd, nothing. The other lab machines stay reachable (a cluster
    needs them); anything beyond the bridge already has no route."""
    return [
        ["OUTPUT", "-d", gateway, "-p", "tcp", "--sport", "22", "-j", "ACCEPT"],
        ["OUTPUT", "-d", gateway, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["OUTPUT", "-d", gateway, "-j", "REJECT"],
    ]


def cut_egress(pid: int, gateway: str) -> None:
    """Inside one machine's netns: no default route (IPv4 or IPv6) and the rules above."""
    for family in ("-4", "-6"):
        while _ip_in(pid, family, "route", "show", "default").stdout.strip():
            res = _ip_in(pid, family, "route", "del", "default")
            if res.returncode != 0:
                raise LabError(f"ip {family} route del default in the netns of pid {pid}: {res.stderr.strip()}")
    for rule in no_egress_rules(gateway):
        if _iptables_in(pid, "-C", *rule).returncode == 0:
            continue
        res = _iptables_in(pid, "-A", *rule)
        if res.returncode != 0:
            raise LabError(f"iptables in the netns of pid {pid}: {res.stderr.strip()}")


def egress_cut(pid: int, gateway: str) -> bool:
    """Whether the machine is as cut_egress leaves it: no default route, every rule in place."""
    routes = any(_ip_in(pid, family, "route", "show", "default").stdout.strip() for family in ("-4", "-6"))
    return not routes and all(_iptables_in(pid, "-C", *rule).returncode == 0 for rule in no_egress_rules(gateway))


def _ip_in(pid: int, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", *argv], capture_output=True, text=True)
