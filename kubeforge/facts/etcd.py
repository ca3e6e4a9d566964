"""Read-only facts of an etcd host: what is installed, whether it runs, whether it holds data, what
kubeforge applied last. One script per host (``gather_member_facts`` sends it to every member in
parallel); the parser is pure and tested on recorded outputs."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from kubeforge.errors import TransportError
from kubeforge.model import Cluster, Host
from kubeforge.transport.base import Command

ENV_PATH = "/etc/etcd/etcd.env"
# sha256 of the configuration (env, unit, PKI) the running member was last (re)started with.
STAMP_PATH = "/etc/etcd/.kubeforge-applied"
PACKAGE = "etcd-server"


@dataclass(frozen=True)
class EtcdHostFacts:
    host: str
    package_version: str | None = None  # Debian version of etcd-server when installed ("3.4.23-4")
    binary_version: str | None = None  # what `etcd --version` says
    active: bool = False
    has_data: bool = False  # <data_dir>/member exists: this member was bootstrapped
    stamp: str = ""  # the applied-config sha kubeforge recorded, "" when none
    initial: dict[str, str] = field(default_factory=dict)  # ETCD_INITIAL_* of the env file in place
    etcdutl: bool = False  # etcdutl is installed (3.5+): snapshot restore goes through it
    restore_flags: tuple[str, ...] = ()  # --bump-revision / --mark-compacted when supported

    @property
    def version(self) -> str | None:
        return self.binary_version or (self.package_version.split("-")[0] if self.package_version else None)

    def installed_at(self, wanted: str) -> bool:
        v = self.version
        return v is not None and v.split("+")[0] == wanted


def probe_command(cluster: Cluster) -> Command:
    data = shlex.quote(cluster.etcd.data_dir.rstrip("/") + "/member")
    script = "\n".join(
        [
            "echo @@pkg",
            f"dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}\\n' {PACKAGE} 2>/dev/null || true",
            "echo @@bin",
            "{ etcd --version 2>/dev/null || true; } | sed -n 's/^etcd Version: //p'",
            "echo @@active",
            "systemctl is-active etcd 2>/dev/null || true",
            "echo @@data",
            f"if test -d {data}; then echo yes; else echo no; fi",
            "echo @@stamp",
            f"cat {STAMP_PATH} 2>/dev/null || true",
            "echo @@env",
            f"grep '^ETCD_INITIAL_' {ENV_PATH} 2>/dev/null || true",
            "echo @@restore",
            "if command -v etcdutl >/dev/null 2>&1; then echo etcdutl; etcdutl snapshot restore --help 2>&1 | "
            "grep -o -e '--bump-revision' -e '--mark-compacted' | sort -u || true; fi",
            "echo @@end",
        ]
    )
    return Command(script=script, sudo=True, timeout=30, check=False, description="etcd host facts")


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("@@"):
            if name:
                out[name] = "\n".join(lines).strip()
            name, lines = line[2:].strip(), []
        else:
            lines.append(line)
    if name:
        out[name] = "\n".join(lines).strip()
    return out


def parse_probe(host: str, text: str) -> EtcdHostFacts:
    s = _sections(text)
    if "end" not in s:
        raise ValueError(f"{host}: etcd facts script output is incomplete")
    pkg = None
    for line in s.get("pkg", "").splitlines():
        status, _, version = line.partition("|")
        if status.strip().startswith("ii") and version.strip():
            pkg = version.strip()
    initial = {}
    for line in s.get("env", "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            initial[key.strip()] = value.strip().strip('"').strip("'")
    restore = s.get("restore", "").split()
    return EtcdHostFacts(
        host=host,
        package_version=pkg,
        binary_version=s.get("bin", "").splitlines()[0].strip() if s.get("bin") else None,
        active=s.get("active", "").strip() == "active",
        has_data=s.get("data", "").strip() == "yes",
        stamp=s.get("stamp", "").strip(),
        initial=initial,
        etcdutl="etcdutl" in restore,
        restore_flags=tuple(f for f in ("--bump-revision", "--mark-compacted") if f in restore),
    )


def gather_member_facts(cluster: Cluster, pool, members: tuple[Host, ...] | None = None, *,
                        allow_unreachable: bool = False) -> dict[str, EtcdHostFacts | None]:
    """Read-only facts of every member, in parallel. Unreachable members raise TransportError
    naming all of them, unless ``allow_unreachable`` (then their entry is None)."""
    members = cluster.etcd_members if members is None else members
    probe = probe_command(cluster)
    result = pool.fanout(members, lambda t: parse_probe(t.host, t.run(probe).stdout))
    out: dict[str, EtcdHostFacts | None] = {}
    down = []
    for o in result.outcomes:
        if o.ok:
            out[o.host] = o.value
        else:
            out[o.host] = None
            down.append(f"{o.host}: {o.message}")
    if down and not allow_unreachable:
        raise TransportError(", ".join(d.split(":")[0] for d in down),
                             "cannot read etcd facts: " + "; ".join(down),
                             hint="bring the machine back (or fix SSH), then run again; nothing was changed")
    return out
