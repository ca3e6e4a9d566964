"""What an etcd upgrade decides from what the members said (ClusterVersions), and the guards and
gates its steps run: a member's running server version, its leadership, and the cluster version etcd
has settled on. The read-only probes before planning (versions, offered packages, auth) are in
kubeforge.facts.etcd_upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeforge.facts.etcd_upgrade import METRICS_HOST, METRICS_PORT, MemberVersion, minor_of, version_key
from kubeforge.facts.etcdctl import client_url, etcdctl_line, port_open
from kubeforge.model import Cluster, Host
from kubeforge.plan.apt import (
    DEBIAN_FRONTEND,
    DPKG_INTERRUPTED,
    POLICY_RC,
    POLICY_RC_MARKER,
    REMOVE_STALE_POLICY_RC,
    write_policy_rc,
)
from kubeforge.transport.base import Command


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
        newest = max((version_key(v)[:2] for v in self.installed.values()), default=())
        return sorted(n for n, mv in self.members.items()
                      if mv is not None and mv.apply_panics and n in self.installed
                      and version_key(self.installed[n])[:2] < newest)

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
def _listening(cluster: Cluster, member: Host) -> str:
    """Fails at once when nothing listens on ``member``'s client port (its etcd is stopped: an apt
    upgrade's prerm stops it before the restart step, an interrupted run may have left it so), where
    etcdctl would retry until its 15 s command timeout: 45 s of every three-member upgrade."""
    return port_open(member.internal_address, cluster.etcd.client_port)


def _self_status(cluster: Cluster, member: Host) -> str:
    # simple output: endpoint, ID, version, db size, is leader, is learner, raft term, raft index, ...
    return f"{_listening(cluster, member)} && {etcdctl_line(cluster, [client_url(cluster, member)], 'endpoint', 'status')}"


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
        DEBIAN_FRONTEND,
        REMOVE_STALE_POLICY_RC,
        f"if {DPKG_INTERRUPTED}; then",
        f"  [ ! -e {POLICY_RC} ] || {{ echo '{POLICY_RC} exists and is not kubeforge'\"'\"'s; repair dpkg by hand' >&2; exit 1; }}",
        *(f"  {line}" for line in write_policy_rc("dpkg recovers").split("\n")),
        f"  trap 'rm -f {POLICY_RC}' EXIT",
        "  dpkg --configure -a",
        "  apt-get install -f -y -q -o Dpkg::Options::=--force-confold >/dev/null",
        "fi",
    ])
    return Command(script=script, sudo=True, timeout=600, description="recover an interrupted package install")
