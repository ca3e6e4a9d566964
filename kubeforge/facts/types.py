"""What facts look like once parsed: small frozen values, every one JSON-serialisable.

Each value carries ``problem`` (None when the section parsed cleanly). A parser that meets output it
does not understand fills what it can, leaves the rest None/empty and says what was wrong there,
so one odd host never stops the others from being checked.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, frozensets and tuples as plain JSON types (sets sorted, for stable output)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (frozenset, set)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class OsInfo:
    id: str | None = None  # "debian", "ubuntu", "rocky"
    version_id: str | None = None  # "12", "24.04"
    family: str | None = None  # "debian", "rhel", ... (from ID and ID_LIKE)
    pretty_name: str | None = None
    codename: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Memory:
    total_bytes: int | None = None
    available_bytes: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class DiskUsage:
    path: str  # the path asked about (/, /var/lib, the etcd data dir)
    probed: str  # the existing directory df looked at (nearest existing parent of ``path``)
    mount: str | None
    size_bytes: int | None
    available_bytes: int | None


@dataclass(frozen=True)
class Disks:
    usage: tuple[DiskUsage, ...] = ()
    problem: str | None = None

    def for_path(self, path: str) -> DiskUsage | None:
        for u in self.usage:
            if u.path == path:
                return u
        return None


@dataclass(frozen=True)
class SwapDevice:
    name: str
    type: str
    size_kib: int
    used_kib: int


@dataclass(frozen=True)
class Swap:
    devices: tuple[SwapDevice, ...] = ()
    known: bool = False  # False when /proc/swaps could not be read or understood
    problem: str | None = None

    @property
    def enabled(self) -> bool | None:
        return bool(self.devices) if self.known else None


class ModuleState(str, enum.Enum):
    LOADED = "loaded"  # listed in /proc/modules, or built in (/sys/module/<name>)
    LOADABLE = "loadable"  # not loaded, but modinfo finds it for the running kernel
    ABSENT = "absent"  # neither
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Modules:
    loaded: frozenset[str] = frozenset()
    wanted: Mapping[str, ModuleState] = field(default_factory=dict)  # the modules kubeforge needs
    problem: str | None = None

    def state(self, name: str) -> ModuleState:
        if name in self.loaded:
            return ModuleState.LOADED
        return self.wanted.get(name, ModuleState.UNKNOWN)


@dataclass(frozen=True)
class Sysctls:
    values: Mapping[str, str | None] = field(default_factory=dict)  # None: key does not exist
    problem: str | None = None


@dataclass(frozen=True)
class Listener:
    address: str  # "0.0.0.0", "::", "127.0.0.1"
    port: int
    process: str | None = None  # program name when ss could tell (needs root)


@dataclass(frozen=True)
class Ports:
    listeners: tuple[Listener, ...] = ()
    source: str | None = None  # "ss" or "proc"
    problem: str | None = None

    def on(self, port: int) -> tuple[Listener, ...]:
        return tuple(x for x in self.listeners if x.port == port)


@dataclass(frozen=True)
class ClockSample:
    """The host's clock read inside the facts script, bracketed by the operator's clock.

    The true offset of the host against the operator lies in
    ``[remote - local_after, remote - local_before]``; that interval is what clock-skew checks use,
    so a slow link widens the uncertainty instead of passing for skew.
    """

    remote: float | None = None
    local_before: float | None = None
    local_after: float | None = None
    problem: str | None = None

    @property
    def offset_interval(self) -> tuple[float, float] | None:
        if self.remote is None or self.local_before is None or self.local_after is None:
            return None
        return (self.remote - self.local_after, self.remote - self.local_before)


@dataclass(frozen=True)
class Macs:
    interfaces: Mapping[str, str] = field(default_factory=dict)  # name -> lower-case MAC
    problem: str | None = None


@dataclass(frozen=True)
class Packages:
    """Installed versions: ``packages`` from dpkg (installed ones only), ``binaries`` from --version."""

    packages: Mapping[str, str] = field(default_factory=dict)
    binaries: Mapping[str, str] = field(default_factory=dict)  # bin -> "1.34.2"
    problem: str | None = None

    def version_of(self, component: str) -> str | None:
        """The component's version, upstream part only (``1.34.2-1.1`` -> ``1.34.2``)."""
        from kubeforge.facts.parse_software import upstream_version

        for pkg in _PACKAGES_OF.get(component, (component,)):
            if pkg in self.packages:
                return upstream_version(self.packages[pkg])
        return self.binaries.get(component)


_PACKAGES_OF = {
    "etcd": ("etcd-server", "etcd"),
    "containerd": ("containerd", "containerd.io"),
}


@dataclass(frozen=True)
class UnitState:
    active: str | None = None  # active, inactive, failed, activating...
    enabled: str | None = None  # enabled, disabled, masked, static...; None: no such unit
    exists: bool = False


@dataclass(frozen=True)
class Units:
    states: Mapping[str, UnitState] = field(default_factory=dict)  # "etcd" -> UnitState
    problem: str | None = None

    def is_active(self, unit: str) -> bool:
        s = self.states.get(unit)
        return bool(s and s.active == "active")


@dataclass(frozen=True)
class Held:
    packages: frozenset[str] = frozenset()
    problem: str | None = None


@dataclass(frozen=True)
class Applied:
    """``/etc/kubeforge/applied.json``: kubeforge's own record on the host (None: not there)."""

    record: Mapping[str, Any] | None = None
    problem: str | None = None
    # the sha256 of each file the record lists as it is on the host now (None: the file is gone);
    # None when not read (an older facts script, or no answer)
    on_host: Mapping[str, str | None] | None = None

    @property
    def present(self) -> bool:
        return self.record is not None

    def edited_files(self) -> tuple[str, ...]:
        """The recorded files whose copy on the host is not what the record says kubeforge wrote."""
        files = (self.record or {}).get("files") or {}
        return tuple(sorted(p for p, sha in files.items() if isinstance(sha, str) and self.edited(p, sha)))

    def edited(self, path: str, sha256: str) -> bool:
        """The host's copy of ``path`` is not ``sha256`` (changed or removed since it was written);
        False when the host's files were not read."""
        return self.on_host is not None and path in self.on_host and self.on_host[path] != sha256


@dataclass(frozen=True)
class Dns:
    """The resolv.conf the kubelet gives pods of dnsPolicy Default (CoreDNS's: kubeadm picks
    systemd-resolved's upstream file when resolved runs, else /etc/resolv.conf) and its name servers."""

    path: str | None = None  # None: not gathered
    nameservers: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class Membership:
    kubelet_conf: bool = False  # /etc/kubernetes/kubelet.conf: the node already joined a cluster
    etcd_data: bool = False  # <etcd data dir>/member exists: an etcd member lived here
    kubeforge_files: bool = False  # /etc/kubeforge/ is not empty: a kubeforge run prepared this host
    etcd_stamp: bool = False  # /etc/etcd/.kubeforge-applied: kubeforge installed etcd here
    problem: str | None = None


@dataclass(frozen=True)
class HostFacts:
    host: str
    os: OsInfo
    kernel: str | None
    arch: str | None
    hostname: str | None
    cpus: int | None
    memory: Memory
    disks: Disks
    swap: Swap
    modules: Modules
    sysctls: Sysctls
    ports: Ports
    time: ClockSample
    product_uuid: str | None
    macs: Macs
    packages: Packages
    units: Units
    held: Held
    applied: Applied
    membership: Membership
    dns: Dns = field(default_factory=Dns)
    problems: Mapping[str, str] = field(default_factory=dict)  # fact -> what could not be parsed

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class FactsError:
    """A host whose facts could not be gathered: not reached, or the facts script itself failed."""

    host: str
    message: str
    reached: bool = False  # True: connected, but the script failed
    lost: bool = False  # the connection broke while the (read-only) script ran: worth one retry

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "error": self.message, "reached": self.reached}
