"""Parsers for the operating system, hardware and kernel facts. Pure: text in, value out, never raise."""

from __future__ import annotations

import re

from kubeforge.facts.types import (
    ClockSample,
    Disks,
    DiskUsage,
    Dns,
    Macs,
    Memory,
    Modules,
    ModuleState,
    OsInfo,
    Swap,
    SwapDevice,
    Sysctls,
)

# Families kubeforge knows how to name; ID_LIKE is consulted when ID itself is not listed.
_FAMILIES = {
    "debian": "debian",
    "ubuntu": "debian",
    "raspbian": "debian",
    "linuxmint": "debian",
    "rhel": "rhel",
    "centos": "rhel",
    "rocky": "rhel",
    "almalinux": "rhel",
    "fedora": "rhel",
    "ol": "rhel",
    "sles": "suse",
    "opensuse": "suse",
    "opensuse-leap": "suse",
    "arch": "arch",
    "alpine": "alpine",
}


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def parse_os_release(text: str) -> OsInfo:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        values[key] = raw
    os_id = values.get("ID", "").lower() or None
    if os_id is None:
        return OsInfo(problem="no ID= line in /etc/os-release" if text.strip() else "/etc/os-release is missing")
    family = _FAMILIES.get(os_id)
    if family is None:
        for like in values.get("ID_LIKE", "").lower().split():
            if like in _FAMILIES:
                family = _FAMILIES[like]
                break
    return OsInfo(
        id=os_id,
        version_id=values.get("VERSION_ID"),
        family=family or os_id,
        pretty_name=values.get("PRETTY_NAME"),
        codename=values.get("VERSION_CODENAME") or values.get("UBUNTU_CODENAME"),
    )


def parse_dns(text: str) -> Dns:
    """The dns section: the resolv.conf's path on the first line, then one name server a line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return Dns()
    if not lines[0].startswith("/") or any(" " in line for line in lines):
        return Dns(problem=f"unreadable resolv.conf listing: {text[:80]!r}")
    return Dns(path=lines[0], nameservers=tuple(lines[1:]))


def parse_line(text: str) -> str | None:
    """kernel release, arch, hostname, product_uuid: one meaningful line or None."""
    line = _first_line(text)
    if line is None or " " in line or len(line) > 255:
        return None
    return line


def parse_product_uuid(text: str) -> str | None:
    line = _first_line(text)
    if line and re.fullmatch(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}", line):
        return line.lower()
    return None


def parse_cpus(text: str) -> int | None:
    line = _first_line(text)
    if line and line.isdigit() and int(line) > 0:
        return int(line)
    return None


def parse_meminfo(text: str) -> Memory:
    kib: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\d+)\s*kB\s*$", line)
        if m:
            kib[m.group(1)] = int(m.group(2))
    if "MemTotal" not in kib:
        return Memory(problem="no MemTotal in /proc/meminfo")
    avail = kib.get("MemAvailable")
    return Memory(total_bytes=kib["MemTotal"] * 1024, available_bytes=avail * 1024 if avail is not None else None)


def parse_disks(text: str) -> Disks:
    """Lines ``<asked path>\\t<existing dir>\\t<df -Pk data line>``."""
    usage: list[DiskUsage] = []
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            bad.append(line)
            continue
        path, probed, df_line = parts
        fields = df_line.split()
        if len(fields) >= 6 and fields[1].isdigit() and fields[3].isdigit():
            usage.append(
                DiskUsage(path, probed, " ".join(fields[5:]), int(fields[1]) * 1024, int(fields[3]) * 1024)
            )
        else:
            usage.append(DiskUsage(path, probed, None, None, None))
            bad.append(line)
    problem = f"unreadable df output: {bad[0][:120]!r}" if bad else None
    if not usage and problem is None:
        problem = "no df output"
    return Disks(usage=tuple(usage), problem=problem)


def parse_swaps(text: str) -> Swap:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("Filename"):
        return Swap(known=False, problem="/proc/swaps missing or not understood")
    devices: list[SwapDevice] = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 4 or not fields[2].isdigit() or not fields[3].isdigit():
            return Swap(known=False, problem=f"unreadable /proc/swaps line: {line[:120]!r}")
        devices.append(SwapDevice(fields[0], fields[1], int(fields[2]), int(fields[3])))
    return Swap(devices=tuple(devices), known=True)


def parse_modules(loaded_text: str, wanted_text: str) -> Modules:
    """``/proc/modules`` names (first column) plus ``<name> loaded|loadable|absent`` lines."""
    loaded = set()
    for line in loaded_text.splitlines():
        name = line.split(" ", 1)[0].strip()
        if re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            loaded.add(name)
    wanted: dict[str, ModuleState] = {}
    bad = []
    for line in wanted_text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2 and fields[1] in ModuleState._value2member_map_:
            wanted[fields[0]] = ModuleState(fields[1])
        else:
            bad.append(line)
    problem = None
    if not loaded and not wanted:
        problem = "no module list (neither /proc/modules nor /sys/module was readable)"
    elif bad:
        problem = f"unreadable module line: {bad[0][:120]!r}"
    return Modules(loaded=frozenset(loaded), wanted=wanted, problem=problem)


def parse_sysctls(text: str) -> Sysctls:
    """``key=value`` lines; ``key=?`` means the key does not exist on this kernel/namespace."""
    values: dict[str, str | None] = {}
    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9_.\-]+", key):
            bad.append(line)
            continue
        value = value.strip()
        values[key] = None if value == "?" else value
    problem = f"unreadable sysctl line: {bad[0][:120]!r}" if bad else (None if values else "no sysctl output")
    return Sysctls(values=values, problem=problem)


def parse_time(text: str, local_before: float | None, local_after: float | None) -> ClockSample:
    line = _first_line(text)
    try:
        remote = float(line) if line else None
    except ValueError:
        remote = None
    if remote is None:
        return ClockSample(None, local_before, local_after, problem=f"not an epoch time: {line!r}")
    return ClockSample(remote, local_before, local_after)


def parse_macs(text: str) -> Macs:
    """``<iface> <mac>`` lines; lo and all-zero addresses (virtual devices) are left out."""
    out: dict[str, str] = {}
    bad = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            bad.append(line)
            continue
        name, mac = fields[0], fields[1].lower()
        if name == "lo":
            continue
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
            # infiniband and tunnels have longer or empty addresses; they are not NIC identities
            continue
        if mac == "00:00:00:00:00:00":
            continue
        out[name] = mac
    return Macs(interfaces=out, problem=f"unreadable interface line: {bad[0][:120]!r}" if bad else None)
