"""What an etcd upgrade asks the members, as commands and pure parsers (tested on recorded output).

Before planning (read-only): which etcd version every member runs and the cluster version (learnt
before any request etcd would propose through raft, and without one), which etcd versions the
package source offers, and whether etcd auth is enabled. While running: guards and gates that read a
member's running server version, its leadership, and the cluster version etcd has settled on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubeforge.facts.etcd import _sections
from kubeforge.model import Cluster, Host
from kubeforge.plan.apt import POLICY_RC, POLICY_RC_MARKER, REMOVE_STALE_POLICY_RC
from kubeforge.plan.etcd.ctl import REQUESTS, client_url, etcdctl_line, may_send
from kubeforge.transport.base import Command

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
    return {v: first[v] for v in sorted(common, key=_vkey)}


def _vkey(v: str) -> tuple[int, ...]:
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


@dataclass(frozen=True)
class ClusterVersions:
    """What every member runs (``installed``: the binary each would start, from the host facts) and
    what the running ones answer. ``lowest_minor`` picks every request: the oldest of any running
    server, any binary a stopped member would start, and the cluster version any member reports;
    None when a member could not be asked at all."""

    members: dict[str, MemberVersion | None]
    installed: dict[str, str]

    @property
    def lowest_minor(self) -> tuple[int, int] | None:
        minors = []
        for name, mv in self.members.items():
            if mv is None:
                return None
            running = minor_of(mv.server) or minor_of(self.installed.get(name))
            if running is None:
                return None
            minors.append(running)
            cluster_minor = minor_of(mv.cluster)
            if cluster_minor is not None:
                minors.append(cluster_minor)
        return min(minors) if minors else None

    def crashing_on_apply(self) -> list[str]:
        """Members that panicked on an entry they cannot apply within the last PANIC_WINDOW_S seconds
        and still have a binary of an older *minor* than another member's: the entry is in their
        log, so every restart panics again (whether the probe caught the process up between two
        restarts or not). Request types come with minors: members a patch apart apply the same
        entries, so a panic logged there is not this (a machine's journal can also hold one from an
        earlier cluster on it)."""
        newest = max((_vkey(v)[:2] for v in self.installed.values()), default=())
        return sorted(n for n, mv in self.members.items()
                      if mv is not None and mv.apply_panics and n in self.installed
                      and _vkey(self.installed[n])[:2] < newest)

    def describe(self) -> str:
        parts = []
        for name, mv in sorted(self.members.items()):
            if mv is None:
                parts.append(f"{name}: not asked")
            elif mv.server:
                parts.append(f"{name}: server {mv.server}, cluster {mv.cluster or '?'}")
            else:
                parts.append(f"{name}: not serving ({self.installed.get(name, '?')} installed"
                             + (f", {mv.apply_panics} apply panics" if mv.apply_panics else "") + ")")
        low = self.lowest_minor
        return "; ".join(parts) + f"; lowest minor {'.'.join(map(str, low)) if low else 'unknown'}"


# --- while running --------------------------------------------------------------------------------
def _self_status(cluster: Cluster, member: Host) -> str:
    # simple output: endpoint, ID, version, db size, is leader, is learner, raft term, raft index, ...
    return etcdctl_line(cluster, [client_url(cluster, member)], "endpoint", "status")


def runs_version(cluster: Cluster, member: Host, version: str) -> Command:
    """Succeeds when the etcd *process* on ``member`` answers as ``version`` (the binary on disk
    may already be newer while the old process still runs)."""
    return Command(
        script=f"{_self_status(cluster, member)} | awk -F', ' -v w={version} '$3 == w {{ok=1}} END {{exit ok ? 0 : 1}}'",
        sudo=True, timeout=30, description=f"etcd on {member.name} runs {version}",
    )


def not_leader_or_done(cluster: Cluster, member: Host, version: str) -> Command:
    return Command(
        script=(f"{_self_status(cluster, member)} | awk -F', ' -v w={version} "
                "'$5 != \"true\" || $3 == w {ok=1} END {exit ok ? 0 : 1}'"),
        sudo=True, timeout=30, description=f"{member.name} does not lead, or already runs {version}",
    )


def move_leadership_away(cluster: Cluster, member: Host, others: tuple[Host, ...], version: str) -> Command:
    """Hand leadership to another voting member (one already on ``version`` when there is one), so
    restarting this member never leaves the cluster waiting out an election timeout."""
    others_eps = [client_url(cluster, h) for h in others]
    others_status = etcdctl_line(cluster, others_eps, "endpoint", "status")
    script = "\n".join([
        # a member an interrupted run stopped between install and restart serves nothing: not the leader
        f"st=$({_self_status(cluster, member)} 2>/dev/null) || {{ echo 'not serving, so not the leader'; exit 0; }}",
        "[ \"$(printf '%s\\n' \"$st\" | awk -F', ' '{print $5}')\" = true ] || { echo 'not the leader'; exit 0; }",
        f"all=$({others_status} 2>/dev/null || true)",
        f"to=$(printf '%s\\n' \"$all\" | awk -F', ' -v w={version} '$3 == w && $6 == \"false\" {{print $2; exit}}')",
        "[ -n \"$to\" ] || to=$(printf '%s\\n' \"$all\" | awk -F', ' '$6 == \"false\" && $2 != \"\" {print $2; exit}')",
        "[ -n \"$to\" ] || { echo 'no other healthy voting member to hand leadership to' >&2; exit 1; }",
        f"{etcdctl_line(cluster, [client_url(cluster, member)], 'move-leader')} \"$to\"",
    ])
    return Command(script=script, sudo=True, timeout=60, description=f"move etcd leadership away from {member.name}")


def member_upgraded(cluster: Cluster, member: Host, version: str, healthy_script: str) -> Command:
    """The cluster is healthy with one leader (``healthy_script``) and ``member`` runs ``version``."""
    runs = runs_version(cluster, member, version).script
    assert runs is not None  # runs_version builds a script
    return Command(
        script=healthy_script + "\n" + runs,
        sudo=True, timeout=40, description=f"etcd healthy and {member.name} on {version}",
    )


def cluster_version_reached(cluster: Cluster, members: tuple[Host, ...], version: str) -> Command:
    """Every member's server runs ``version`` and the cluster version (which etcd raises only once
    every member runs the new minor) is ``version``'s minor, as the local member reports it."""
    minor = ".".join(version.split(".")[:2])
    status = etcdctl_line(cluster, [client_url(cluster, h) for h in members], "endpoint", "status")
    script = "\n".join([
        f"exec 3<>/dev/tcp/{METRICS_HOST}/{METRICS_PORT} || exit 1",
        "printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3",
        "cv=$(sed -n 's/^etcd_cluster_version{cluster_version=\"\\([0-9.]*\\)\"} 1\\r*$/\\1/p' <&3 | sort -V | tail -n 1)",
        "exec 3<&-",
        f"[ \"$cv\" = {minor} ] || {{ echo \"cluster version ${{cv:-unknown}}, waiting for {minor}\" >&2; exit 1; }}",
        f"st=$({status})",
        f"behind=$(printf '%s\\n' \"$st\" | awk -F', ' -v w={version} 'NF > 2 && $3 != w {{print $1 \" \" $3}}')",
        f"[ -z \"$behind\" ] || {{ echo \"not on {version} yet: $behind\" >&2; exit 1; }}",
        f"[ \"$(printf '%s\\n' \"$st\" | grep -c .)\" -eq {len(members)} ]",
    ])
    return Command(script=script, sudo=True, timeout=40,
                   description=f"etcd cluster version {minor}, every member on {version}")


# --- a machine that lost power mid-install ---------------------------------------------------------
def package_state_clean() -> Command:
    return Command(
        script=(f"! grep -qs '{POLICY_RC_MARKER}' {POLICY_RC} && [ -z \"$(ls -A /var/lib/dpkg/updates 2>/dev/null)\" ] "
                "&& [ -z \"$(dpkg --audit 2>/dev/null)\" ]"),
        sudo=True, timeout=30, description="no interrupted package install",
    )


def recover_package_state() -> Command:
    """Finish what a machine that lost power during apt left behind: kubeforge's temporary
    policy-rc.d (nothing of kubeforge's runs apt on this member now) and half-configured packages,
    configured with service starts still forbidden, so the running member is not restarted."""
    script = "\n".join([
        "export DEBIAN_FRONTEND=noninteractive",
        REMOVE_STALE_POLICY_RC,
        "if [ -n \"$(ls -A /var/lib/dpkg/updates 2>/dev/null)\" ] || [ -n \"$(dpkg --audit 2>/dev/null)\" ]; then",
        f"  [ ! -e {POLICY_RC} ] || {{ echo '{POLICY_RC} exists and is not kubeforge'\"'\"'s; repair dpkg by hand' >&2; exit 1; }}",
        f"  printf '#!/bin/sh\\n# {POLICY_RC_MARKER} while dpkg recovers\\nexit 101\\n' > {POLICY_RC}",
        f"  chmod 0755 {POLICY_RC}",
        f"  trap 'rm -f {POLICY_RC}' EXIT",
        "  dpkg --configure -a",
        "  apt-get install -f -y -q -o Dpkg::Options::=--force-confold >/dev/null",
        "fi",
    ])
    return Command(script=script, sudo=True, timeout=600, description="recover an interrupted package install")
