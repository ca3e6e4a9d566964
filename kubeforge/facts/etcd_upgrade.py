"""What an etcd upgrade asks the members before planning, as commands, pure parsers (tested on
recorded output) and runners: which etcd version every member runs and the cluster version (learnt
without any request etcd would propose through raft), which etcd versions the package source
offers, and whether etcd auth is enabled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubeforge.facts.etcd import _sections
from kubeforge.facts.etcdctl import REQUESTS, client_url, etcdctl_line, may_send
from kubeforge.model import Cluster, Host
from kubeforge.transport.base import Command, Transport

# The plain-HTTP metrics listener every kubeforge member has (ETCD_LISTEN_METRICS_URLS in
# templates/etcd/etcd.env.j2): the one place a member says which cluster version it runs.
METRICS_HOST, METRICS_PORT = "127.0.0.1", 2381

_UPSTREAM = re.compile(r"^(?:\d+:)?(\d+\.\d+\.\d+)")


# --- the package source ---------------------------------------------------------------------------
def offered_versions_command(cluster: Cluster) -> Command:
    """``apt-get update`` + ``apt-cache madison`` into a private lists directory that is removed
    afterwards: the member's own apt state is left exactly as it was."""
    pkgs = " ".join(cluster.packages.etcd_packages)
    script = "\n".join([
        "tmp=$(mktemp -d /tmp/kubeforge-apt.XXXXXX)",
        "trap 'rm -rf \"$tmp\"' EXIT",
        'mkdir -p "$tmp/lists/partial" && chmod 0755 "$tmp"',
        # apt downloads as _apt when it can write there, as root (with a notice) otherwise
        'chown -R _apt:root "$tmp/lists" 2>/dev/null || true',
        'set -- -o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=',
        'out=$(apt-get "$@" update -q -o Acquire::Retries=3 2>&1) || { printf \'%s\\n\' "$out" >&2; exit 2; }',
        "if printf '%s\\n' \"$out\" | grep -q -e '^W: Failed to fetch' -e '^E: '; then",
        "  printf '%s\\n' \"$out\" >&2; echo 'apt-get update could not read the package source' >&2; exit 2",
        "fi",
        f'apt-cache "$@" madison {pkgs}',
    ])
    return Command(script=script, sudo=True, timeout=300, description="etcd versions the package source offers")


def parse_offered(text: str, packages: tuple[str, ...]) -> dict[str, str]:
    """``apt-cache madison`` output -> {upstream version: Debian version of the first package} for
    the versions every one of ``packages`` is offered at."""
    per_pkg: dict[str, dict[str, str]] = {p: {} for p in packages}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or parts[0] not in per_pkg:
            continue
        m = _UPSTREAM.match(parts[1])
        if m:
            per_pkg[parts[0]].setdefault(m.group(1), parts[1])
    common = set.intersection(*(set(v) for v in per_pkg.values())) if per_pkg else set()
    first = per_pkg[packages[0]] if packages else {}
    return {v: first[v] for v in sorted(common, key=version_key)}


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


# --- auth -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuthState:
    enabled: bool | None  # None: the answers do not tell
    detail: str


def auth_probe_command(cluster: Cluster, member: Host, lowest_minor: tuple[int, int] | None) -> Command:
    """``auth status`` when every member runs 3.5+ (``lowest_minor``: the cluster's lowest, from
    ``ClusterVersions``); ``user list`` always. AuthStatus is a raft entry new in 3.5: sent while a
    member runs 3.4, that member panics applying it and crash-loops (it replays it on every start)."""
    ep = [client_url(cluster, member)]
    lines = []
    if may_send(REQUESTS[("auth", "status")], lowest_minor):
        lines += ["echo @@auth-status",
                  f"{etcdctl_line(cluster, ep, 'auth', 'status', lowest_minor=lowest_minor)} 2>&1; echo \"@@rc $?\""]
    lines += ["echo @@user-list", f"{etcdctl_line(cluster, ep, 'user', 'list')} 2>&1; echo \"@@rc $?\""]
    return Command(script="\n".join(lines), sudo=True, timeout=60, check=False, description="etcd auth status")


def _section(text: str, name: str) -> tuple[list[str], int | None]:
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("@@") and not line.startswith("@@rc"):
            inside = line[2:].strip() == name
            continue
        if inside:
            if line.startswith("@@rc"):
                rc = line.split()[-1]
                return lines, int(rc) if rc.isdigit() else None
            lines.append(line)
    return lines, None


def parse_auth(text: str) -> AuthState:
    status, _ = _section(text, "auth-status")
    for line in status:
        m = re.match(r"^Authentication Status:\s*(true|false)\s*$", line.strip())
        if m:
            return AuthState(m.group(1) == "true", f"auth status: {m.group(1)}")
    users, rc = _section(text, "user-list")
    # the JSON warnings etcdctl's client logs on retries are not answers
    answer = [ln.strip() for ln in users if ln.strip() and not ln.strip().startswith("{")]
    if rc == 0:
        if not answer:
            return AuthState(False, "no etcd users exist, so auth cannot be enabled")
        return AuthState(None, f"etcd users exist ({', '.join(answer[:5])}) and this etcd cannot say whether auth is on")
    refused = " ".join(answer)
    if "permission denied" in refused or "user name is empty" in refused or "invalid auth token" in refused:
        return AuthState(True, f"`etcdctl user list` is refused: {answer[-1] if answer else refused}")
    return AuthState(None, f"`etcdctl user list` failed: {answer[-1] if answer else 'no answer'}")


# --- what every member runs, learnt without a raft request --------------------------------------
# A 3.4 member that was sent a raft entry only a newer etcd knows panics applying it: 3.4 prints
# `panic: not implemented`, 3.5 logs "not implemented apply" at panic level.
APPLY_PANIC_PATTERNS = ("panic: not implemented", "not implemented apply")
PANIC_WINDOW_S = 120  # etcd's unit restarts it every 5 s: a crash-looping member panicked within this


@dataclass(frozen=True)
class MemberVersion:
    host: str
    active: bool  # systemd says the etcd unit is active (a crash-looping one flips in and out)
    server: str | None  # what the running process says it is (metrics), None when it does not answer
    cluster: str | None  # the cluster version this member reports ("3.4"), None when it does not answer
    apply_panics: int  # panics applying an entry it does not know, in the last PANIC_WINDOW_S seconds


def member_version_command() -> Command:
    """The member's own server and cluster version from its plain-HTTP metrics listener on loopback
    (no TLS, no etcdctl, nothing proposed), whether its unit is active, and whether it has been
    panicking on an entry it cannot apply."""
    greps = " ".join(f"-e {p!r}" for p in APPLY_PANIC_PATTERNS)
    script = "\n".join([
        "echo @@active",
        "systemctl is-active etcd 2>/dev/null || true",
        "echo @@metrics",
        f"if exec 3<>/dev/tcp/{METRICS_HOST}/{METRICS_PORT}; then",
        "  printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3",
        "  grep -a -e '^etcd_server_version{' -e '^etcd_cluster_version{' <&3 || true",
        "  exec 3<&-",
        "fi 2>/dev/null",
        "echo @@panics",
        f"journalctl -u etcd --since=-{PANIC_WINDOW_S}s -o cat --no-pager 2>/dev/null | grep -c {greps} || true",
        "echo @@end",
    ])
    return Command(script=script, sudo=True, timeout=30, check=False, description="etcd server and cluster version")


def parse_member_version(host: str, text: str) -> MemberVersion:
    sections = {k: [ln.strip() for ln in v.splitlines()] for k, v in _sections(text).items()}
    if "end" not in sections:
        raise ValueError(f"{host}: the etcd version probe's output is incomplete")
    server = cluster = None
    for line in sections.get("metrics", []):
        m = re.match(r'^etcd_server_version\{server_version="([0-9.]+)"\}\s+1\b', line)
        if m:
            server = m.group(1)
        m = re.match(r'^etcd_cluster_version\{cluster_version="([0-9.]+)"\}\s+1\b', line)
        if m:
            cluster = m.group(1)
    counts = [int(x) for x in sections.get("panics", []) if x.isdigit()]
    return MemberVersion(host=host, active=(sections.get("active") or [""])[0] == "active", server=server,
                         cluster=cluster, apply_panics=counts[0] if counts else 0)


def minor_of(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    parts = version.split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() else None


# --- the runners -----------------------------------------------------------------------------------
def read_offered(cluster: Cluster, transport: Transport) -> dict[str, str]:
    """{upstream version: Debian version} of etcd the package source offers, as ``transport``'s
    host's apt sees it. CommandFailed when apt cannot read the source."""
    return parse_offered(transport.run(offered_versions_command(cluster)).stdout, cluster.packages.etcd_packages)


def read_member_versions(cluster: Cluster, pool) -> dict[str, MemberVersion | None]:
    """Every member's server and cluster version, in parallel; None for a member not asked."""
    probe = member_version_command()
    result = pool.fanout(cluster.etcd_members, lambda t: parse_member_version(t.host, t.run(probe).stdout))
    return {o.host: (o.value if o.ok else None) for o in result.outcomes}


def read_auth(cluster: Cluster, transport: Transport, member: Host, lowest_minor: tuple[int, int] | None) -> AuthState:
    return parse_auth(transport.run(auth_probe_command(cluster, member, lowest_minor)).stdout)
