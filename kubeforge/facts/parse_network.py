"""Parser for listening TCP ports: ``ss -Htlnp`` output, or /proc/net/tcp{,6} where ss is missing."""

from __future__ import annotations

import ipaddress
import re

from kubeforge.facts.types import Listener, Ports

_PROCESS_RE = re.compile(r'users:\(\("([^"]+)"')


def _split_host_port(local: str) -> tuple[str, int] | None:
    host, sep, port = local.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    host = host.split("%", 1)[0]  # 127.0.0.53%lo -> 127.0.0.53
    if host == "*":
        host = "0.0.0.0"
    return host, int(port)


def _parse_ss(lines: list[str]) -> tuple[list[Listener], list[str]]:
    out: list[Listener] = []
    bad: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            bad.append(line)
            continue
        # -H drops the header; the first column is the state (LISTEN), local address is the 4th
        if fields[0] != "LISTEN":
            bad.append(line)
            continue
        hp = _split_host_port(fields[3])
        if hp is None:
            bad.append(line)
            continue
        m = _PROCESS_RE.search(line)
        out.append(Listener(hp[0], hp[1], m.group(1) if m else None))
    return out, bad


def _hex_to_ip(hexaddr: str) -> str | None:
    try:
        raw = bytes.fromhex(hexaddr)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    # the kernel prints each 32-bit word in host (little-endian) order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _parse_proc(lines: list[str]) -> tuple[list[Listener], list[str]]:
    out: list[Listener] = []
    bad: list[str] = []
    for line in lines:
        fields = line.split()
        if not fields or fields[0] == "sl":
            continue
        if len(fields) < 4 or ":" not in fields[1]:
            bad.append(line)
            continue
        if fields[3] != "0A":  # 0A = TCP_LISTEN
            continue
        addr_hex, _, port_hex = fields[1].partition(":")
        ip = _hex_to_ip(addr_hex)
        try:
            port = int(port_hex, 16)
        except ValueError:
            ip = None
        if ip is None:
            bad.append(line)
            continue
        out.append(Listener(ip, port))
    return out, bad


def parse_ports(text: str) -> Ports:
    """The section starts with ``#ss`` or ``#proc`` saying which source follows."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] not in ("#ss", "#proc"):
        return Ports(problem="no listening-port data (neither ss nor /proc/net/tcp)")
    source = lines[0][1:]
    listeners, bad = (_parse_ss if source == "ss" else _parse_proc)(lines[1:])
    unique = sorted(set(listeners), key=lambda x: (x.port, x.address, x.process or ""))
    problem = f"unreadable {source} line: {bad[0][:120]!r}" if bad else None
    return Ports(listeners=tuple(unique), source=source, problem=problem)
