"""Kubernetes and etcd versions: parsing, comparison, the supported table, kubeadm API choice.

The one table of supported Kubernetes minors is ``SUPPORTED_MINORS``: adding a newer minor is adding
one line there (its latest known patch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")

# minor -> latest patch known to kubeforge (used when an upgrade path passes through that minor)
SUPPORTED_MINORS: dict[tuple[int, int], int] = {
    (1, 31): 14,
    (1, 32): 10,
    (1, 33): 6,
    (1, 34): 2,
    (1, 35): 1,
}

# etcd minor -> latest patch known; etcd upgrades go one minor at a time. Keep it current: an
# upgrade to the next minor goes through this patch first (3.5.30: Debian sid ships it).
SUPPORTED_ETCD_MINORS: dict[tuple[int, int], int] = {
    (3, 4): 37,
    (3, 5): 30,
    (3, 6): 5,
}

# etcd minor -> the lowest patch of it that may move on to the next minor. A hard floor, unlike the
# latest-patch advice above: etcd's 3.5 -> 3.6 guide requires 3.5.20+ (older 3.5 patches can
# corrupt membership data on the way), and --allow-older-patch never lowers it.
ETCD_MINOR_EXIT_FLOORS: dict[tuple[int, int], int] = {
    (3, 5): 20,
}


class VersionError(ValueError):
    """A version string that cannot be parsed or is not supported."""


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str | "Version") -> "Version":
        if isinstance(text, Version):
            return text
        m = _VERSION_RE.match(str(text).strip())
        if not m:
            raise VersionError(f"'{text}' is not a version (expected X.Y.Z, e.g. 1.34.2)")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def minor_str(self) -> str:
        return f"{self.major}.{self.minor}"

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __eq__(self, other: object) -> bool:
        # KubeVersion(1, 34, 2) == Version(1, 34, 2): a version is its numbers, whatever its class
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def v(self) -> str:
        """With the leading ``v`` kubeadm expects (``v1.34.2``)."""
        return f"v{self}"


class KubeVersion(Version):
    """A Kubernetes version."""


class EtcdVersion(Version):
    """An etcd version."""


def parse_kube(text: str) -> KubeVersion:
    v = Version.parse(text)
    return KubeVersion(v.major, v.minor, v.patch)


def parse_etcd(text: str) -> EtcdVersion:
    v = Version.parse(text)
    return EtcdVersion(v.major, v.minor, v.patch)


def is_supported_kube(v: Version) -> bool:
    return v.minor_key in SUPPORTED_MINORS


def supported_kube_minors() -> list[str]:
    return [f"{a}.{b}" for a, b in sorted(SUPPORTED_MINORS)]


def is_supported_etcd(v: Version) -> bool:
    return v.minor_key in SUPPORTED_ETCD_MINORS


def latest_patch(minor: tuple[int, int]) -> KubeVersion:
    return KubeVersion(minor[0], minor[1], SUPPORTED_MINORS[minor])


def kubeadm_api_version(v: Version) -> str:
    """kubeadm's configuration API for a Kubernetes version: v1beta4 from 1.31, v1beta3 before."""
    return "kubeadm.k8s.io/v1beta4" if v.minor_key >= (1, 31) else "kubeadm.k8s.io/v1beta3"
