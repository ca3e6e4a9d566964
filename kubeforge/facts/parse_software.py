"""Parsers for installed software: dpkg versions, ``--version`` output, systemd units, holds,
kubeforge's own record, and whether the node already belongs to a cluster."""

from __future__ import annotations

import json
import re

from kubeforge.facts.types import Applied, Held, Membership, Packages, Units, UnitState

_VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+)")


def upstream_version(deb_version: str) -> str:
    """``1.34.2-1.1`` -> ``1.34.2``; ``3.4.23-4+b7`` -> ``3.4.23``; ``1:1.2.3-1`` -> ``1.2.3``."""
    m = _VERSION_RE.search(deb_version.split(":", 1)[-1])
    return m.group(1) if m else deb_version


def parse_packages(dpkg_text: str, binaries_text: str) -> Packages:
    """``dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`` and ``bin\\tfirst line``.

    Only packages whose status says installed (``ii``/``hi``) count; removed-but-configured ones
    (``rc``) are not installed.
    """
    packages: dict[str, str] = {}
    bad: list[str] = []
    for line in dpkg_text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            bad.append(line)
            continue
        name, version, status = parts
        if status.strip()[:2] in ("ii", "hi"):
            packages[name] = version
    binaries: dict[str, str] = {}
    for line in binaries_text.splitlines():
        name, sep, out = line.partition("\t")
        if not sep:
            if line.strip():
                bad.append(line)
            continue
        m = _VERSION_RE.search(out)
        if m:
            binaries[name.strip()] = m.group(1)
    problem = f"unreadable package line: {bad[0][:120]!r}" if bad else None
    return Packages(packages=packages, binaries=binaries, problem=problem)


def parse_units(text: str) -> Units:
    """``systemctl show -p Id -p LoadState -p ActiveState -p UnitFileState <units>``: blank-line blocks."""
    states: dict[str, UnitState] = {}
    block: dict[str, str] = {}
    saw_any = False

    def flush() -> None:
        unit = block.get("Id", "")
        if unit:
            name = unit.removesuffix(".service")
            exists = block.get("LoadState") not in (None, "not-found")
            states[name] = UnitState(
                active=block.get("ActiveState") or None,
                enabled=(block.get("UnitFileState") or None) if exists else None,
                exists=exists,
            )
        block.clear()

    for line in text.splitlines() + [""]:
        if not line.strip():
            flush()
            continue
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z]+", key):
            block[key] = value.strip()
            saw_any = True
    if not saw_any:
        first = next((ln for ln in text.splitlines() if ln.strip()), "no output")
        return Units(problem=f"systemctl did not answer: {first[:120]}")
    return Units(states=states)


def parse_held(text: str) -> Held:
    names = set()
    for line in text.splitlines():
        name = line.strip()
        if not name:
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?", name):
            return Held(problem=f"unreadable apt-mark line: {name[:120]!r}")
        names.add(name.split(":", 1)[0])
    return Held(packages=frozenset(names))


def parse_applied(text: str, files_text: str = "") -> Applied:
    """``#absent`` when the file does not exist; otherwise its JSON content, with ``files_text`` (the
    ``applied_files`` section: ``sha256sum`` lines and ``#absent <path>``) as the listed files' state."""
    if text.strip() == "#absent":
        return Applied()
    try:
        record = json.loads(text)
    except ValueError as exc:
        return Applied(problem=f"/etc/kubeforge/applied.json is not JSON: {exc}")
    if not isinstance(record, dict):
        return Applied(problem="/etc/kubeforge/applied.json is not a JSON object")
    return Applied(record=record, on_host=parse_applied_files(files_text))


_SUM_LINE = re.compile(r"([0-9a-f]{64}) [ *](/.*)")


def parse_applied_files(text: str) -> dict[str, str | None] | None:
    """Path -> its sha256 on the host (None: absent); None unless the section says it was checked.
    A line of any other shape is left out: that file then counts as not read, never as edited."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#checked":
        return None
    out: dict[str, str | None] = {}
    for line in lines[1:]:
        if line.startswith("#absent /"):
            out[line[len("#absent "):]] = None
        elif m := _SUM_LINE.fullmatch(line):
            out[m.group(2)] = m.group(1)
    return out


def parse_membership(text: str) -> Membership:
    words = set(text.split())
    unknown = words - {"kubelet.conf", "etcd-data", "kubeforge-files", "etcd-stamp", "#checked"}
    if "#checked" not in words:
        return Membership(problem="membership section missing")
    return Membership(
        kubelet_conf="kubelet.conf" in words,
        etcd_data="etcd-data" in words,
        kubeforge_files="kubeforge-files" in words,
        etcd_stamp="etcd-stamp" in words,
        problem=f"unexpected membership output: {sorted(unknown)!r}" if unknown else None,
    )
