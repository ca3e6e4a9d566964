"""What the cross-field rules see: the validated sections, where everything is, and a problem sink."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kubeforge.errors import Problem
from kubeforge.inventory.messages import clip, where
from kubeforge.inventory.paths import resolve_path  # noqa: F401 - rules import it from here
from kubeforge.inventory.schema import HostDoc, SpecDoc
from kubeforge.inventory.yamldoc import Positions

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# a host name in any case (SSH targets may be written in upper case; DNS is case-insensitive)
HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?$")


@lru_cache(maxsize=16384)  # every address is looked at by several rules
def as_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and bool(DNS1123_SUBDOMAIN.match(text))


@dataclass
class Context:
    file: str
    positions: Positions
    data: dict
    spec: SpecDoc
    # spec sections (field names) that failed the schema: rules needing them are skipped, so one
    # typo does not cascade into a dozen derived complaints
    invalid: set[str]
    hosts: list[tuple[int, HostDoc]]
    base_dir: Path
    name: str | None
    problems: list[Problem] = field(default_factory=list)

    # --- reporting -------------------------------------------------------------------------------
    def _add(self, path: tuple, message: str, severity: str, at_key: bool) -> None:
        line, col = self.positions.key(path) if at_key else self.positions.value(path)
        self.problems.append(Problem(self.file, line, col, clip(where(path)), clip(message), severity=severity))

    def error(self, path: tuple, message: str, *, at_key: bool = False) -> None:
        self._add(path, message, "error", at_key)

    def warn(self, path: tuple, message: str, *, at_key: bool = False) -> None:
        self._add(path, message, "warning", at_key)

    def given(self, path: tuple) -> bool:
        """Whether the document itself sets ``path`` (rather than a default)."""
        node: Any = self.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return False
        return True

    def spec_path(self, *parts: Any) -> tuple:
        """``spec_path("etcd", "topology")``; when not written, the nearest written ancestor is used."""
        return ("spec",) + parts

    def ok(self, *sections: str) -> bool:
        return not (set(sections) & self.invalid)

    # --- derived views ---------------------------------------------------------------------------
    def with_role(self, role: str) -> list[tuple[int, HostDoc]]:
        return [(i, h) for i, h in self.hosts if role in h.roles]

    @property
    def topology(self) -> str:
        """Explicit topology, else external when any host has role etcd, else stacked."""
        if self.spec.etcd.topology:
            return self.spec.etcd.topology
        return "external" if self.with_role("etcd") else "stacked"

    def host_path(self, index: int, *parts: Any) -> tuple:
        return ("spec", "hosts", index) + parts

    def internal_ip(self, h: HostDoc):
        return as_ip(h.internal_address or h.address)
