"""Kubernetes and etcd versions: parsing, comparison, and the version facts of versions.yaml.

Every version number kubeforge acts on comes from ``kubeforge/model/versions.yaml`` (each fact with
its source beside it), loaded once through importlib.resources, or from the package source at plan
time (the latest patch of a Kubernetes minor). Adding a Kubernetes minor is adding data there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, total_ordering
from importlib import resources
from typing import Any

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")
DATA_FILE = "versions.yaml"
SUPPORTED = "supported"
UPGRADE_FROM = "upgrade-from"


class VersionError(ValueError):
    """A version string that cannot be parsed or is not supported."""


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str | Version) -> Version:
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


# --- the data ----------------------------------------------------------------------------------------

@cache
def raw_data() -> dict[str, Any]:
    """versions.yaml as loaded (read once; the package ships it, see pyproject)."""
    from ruamel.yaml import YAML

    text = resources.files("kubeforge.model").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return YAML(typ="safe").load(text)


def _minor_key(text: str) -> tuple[int, int]:
    major, minor = str(text).split(".")
    return int(major), int(minor)


class _MinorFacts:
    minor: tuple[int, int]
    sources: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.minor[0]}.{self.minor[1]}"

    def source(self, fact: str) -> str:
        """Where versions.yaml says ``fact`` of this minor comes from."""
        return self.sources.get(fact) or "kubeforge/model/versions.yaml"


@dataclass(frozen=True)
class KubeMinor(_MinorFacts):
    """What versions.yaml says about one Kubernetes minor."""

    minor: tuple[int, int]
    support: str  # SUPPORTED or UPGRADE_FROM
    end_of_life: str | None
    config_apis: tuple[str, ...]  # kubeadm.k8s.io versions its kubeadm reads; the first is rendered
    kubeadm_etcd: EtcdVersion
    min_external_etcd: EtcdVersion | None
    pause: str
    sources: dict[str, str]
    etcd_image_tag: str = ""  # kubeadm's etcd image tag ("3.6.6-0")
    coredns: str = ""  # kubeadm's CoreDNS image tag ("v1.12.0")


@dataclass(frozen=True)
class EtcdMinor(_MinorFacts):
    """What versions.yaml says about one etcd minor."""

    minor: tuple[int, int]
    support: str
    latest_release: EtcdVersion
    exit_floor: EtcdVersion | None
    v2store_check_before_exit: bool
    sources: dict[str, str]


def _minors(section: str, make) -> dict:
    return dict(sorted((_minor_key(name), make(_minor_key(name), d)) for name, d in raw_data()[section]["minors"].items()))


@cache
def kube_minors() -> dict[tuple[int, int], KubeMinor]:
    return _minors("kubernetes", lambda key, d: KubeMinor(
            minor=key, support=d["support"], end_of_life=d.get("endOfLife"),
            config_apis=tuple(f"kubeadm.k8s.io/{a}" for a in d["kubeadmConfigAPIs"]),
            kubeadm_etcd=parse_etcd(d["kubeadmEtcd"]),
            min_external_etcd=parse_etcd(d["minExternalEtcd"]) if d.get("minExternalEtcd") else None,
            pause=d["pause"], sources=dict(d.get("sources") or {}),
            etcd_image_tag=d["etcdImageTag"], coredns=d["coredns"],
        ))


@cache
def etcd_minors() -> dict[tuple[int, int], EtcdMinor]:
    return _minors("etcd", lambda key, d: EtcdMinor(
            minor=key, support=d["support"], latest_release=parse_etcd(d["latestRelease"]),
            exit_floor=parse_etcd(d["exitFloor"]) if d.get("exitFloor") else None,
            v2store_check_before_exit=bool(d.get("v2storeCheckBeforeExit")), sources=dict(d.get("sources") or {}),
        ))


def etcd_rule_source(rule: str) -> str:
    return raw_data()["etcd"]["rules"][rule]


def skew(name: str) -> int:
    """A skew limit (``kubeletMaxMinorsBehind``...) from versions.yaml."""
    return int(raw_data()["kubernetes"]["skew"][name])


def skew_source() -> str:
    return raw_data()["kubernetes"]["skew"]["source"]


def supported_os() -> dict[str, tuple[str, ...]]:
    return {k: tuple(str(x) for x in v) for k, v in raw_data()["operatingSystems"]["supported"].items()}


def supported_arch() -> dict[str, str]:
    return dict(raw_data()["operatingSystems"]["architectures"])


# --- questions about the data -------------------------------------------------------------------------

def kube_minor(v: Version | tuple[int, int]) -> KubeMinor | None:
    return kube_minors().get(v.minor_key if isinstance(v, Version) else v)


def is_supported_kube(v: Version) -> bool:
    """Known to kubeforge: supported, or kept so clusters running it can be upgraded out of it."""
    return v.minor_key in kube_minors()


def supported_kube_minors() -> list[str]:
    return [m.name for m in kube_minors().values() if m.support == SUPPORTED]


def known_kube_minors() -> list[str]:
    return [m.name for m in kube_minors().values()]


def upgrade_from_kube_minors() -> list[str]:
    return [m.name for m in kube_minors().values() if m.support == UPGRADE_FROM]


def newest_supported_minor() -> KubeMinor:
    return [m for m in kube_minors().values() if m.support == SUPPORTED][-1]


def is_supported_etcd(v: Version) -> bool:
    return v.minor_key in etcd_minors()


def etcd_minor(v: Version | tuple[int, int]) -> EtcdMinor | None:
    return etcd_minors().get(v.minor_key if isinstance(v, Version) else v)


def known_etcd_minors() -> list[str]:
    return [m.name for m in etcd_minors().values()]


def kubeadm_api_version(v: Version) -> str:
    """The kubeadm configuration API kubeforge renders for a Kubernetes version (versions.yaml)."""
    m = kube_minor(v)
    if m is None:
        raise VersionError(f"Kubernetes {v.minor_str} is not in kubeforge/model/versions.yaml "
                           f"(known minors: {', '.join(known_kube_minors())})")
    return m.config_apis[0]


def kubeadm_config_apis(v: Version) -> tuple[str, ...]:
    m = kube_minor(v)
    return m.config_apis if m else ()


def pause_image(v: Version) -> str:
    m = kube_minor(v)
    if m is None:
        raise VersionError(f"no pause image known for Kubernetes {v.minor_str}")
    return m.pause


def own_image(name: str) -> tuple[str, str, str]:
    """An image kubeforge itself runs (``kubeVip``): (image without tag, tag, source)."""
    d = raw_data()["images"][name]
    return d["image"], d["tag"], d["source"]


def kubeadm_etcd(v: Version) -> EtcdVersion:
    """The etcd kubeadm of ``v``'s minor runs for a stacked control plane (SupportedEtcdVersion)."""
    m = kube_minor(v)
    if m is None:
        raise VersionError(f"no kubeadm etcd version known for Kubernetes {v.minor_str}")
    return m.kubeadm_etcd


def end_of_life_note(v: Version) -> str | None:
    """A warning for a Kubernetes minor kept only to upgrade out of; None for a supported one."""
    m = kube_minor(v)
    if m is None or m.support != UPGRADE_FROM:
        return None
    nxt = next((k for k in kube_minors().values() if k.minor > m.minor), None)
    eol = f" on {m.end_of_life}" if m.end_of_life else ""
    return (f"Kubernetes {m.name} left upstream support{eol} ({m.source('endOfLife')}); kubeforge keeps it only so "
            f"clusters running it can grow and be upgraded: next `kubeforge upgrade -i <inventory> --to "
            f"<{nxt.name if nxt else m.name}.x>`")


def etcd_end_of_life_note(v: Version) -> str | None:
    m = etcd_minor(v)
    if m is None or m.support != UPGRADE_FROM:
        return None
    nxt = etcd_minor((m.minor[0], m.minor[1] + 1))
    to = f" --to {nxt.latest_release}" if nxt else ""
    return (f"etcd {m.name} is end of life ({m.source('support')}); upgrade it one minor at a time: "
            f"`kubeforge etcd upgrade -i <inventory>{to}`")


def version_summary() -> str:
    """The lines ``kubeforge version`` prints after its own version."""
    etcd = [m.name for m in etcd_minors().values() if m.support == SUPPORTED]
    return "\n".join([
        "supported Kubernetes minors: " + ", ".join(supported_kube_minors()),
        "upgrade-from only (past end of life): " + ", ".join(upgrade_from_kube_minors()),
        "supported etcd minors: " + ", ".join(etcd),
        "latest patches: read from the package source at plan time (`kubeforge version -o json` for every fact)",
    ])


def version_facts() -> dict[str, Any]:
    """Everything versions.yaml holds, with sources, for ``kubeforge version -o json``."""
    data = raw_data()
    return {
        "checked": data.get("checked"),
        "kubernetes": {
            "supportedMinors": supported_kube_minors(),
            "upgradeFromMinors": upgrade_from_kube_minors(),
            "latestPatch": "read from the package source the inventory names, at plan time",
            "skew": data["kubernetes"]["skew"],
            "minors": data["kubernetes"]["minors"],
        },
        "etcd": {
            "supportedMinors": [m.name for m in etcd_minors().values() if m.support == SUPPORTED],
            "upgradeFromMinors": [m.name for m in etcd_minors().values() if m.support == UPGRADE_FROM],
            "minors": data["etcd"]["minors"],
            "rules": data["etcd"]["rules"],
        },
        "operatingSystems": data["operatingSystems"],
        "removedAPIs": data.get("removedAPIs"),
    }
