"""`kubeforge etcd status`: what the members say (kubeforge.facts.etcd_status), and the check
the command ends with."""

from __future__ import annotations

from kubeforge.facts.etcd_status import (  # noqa: F401  (importers name them from here)
    ClusterStatus,
    MemberStatus,
    gather_status,
    parse_member_output,
    status_script,
)


def health_problem(status: ClusterStatus):
    """The CheckFailed that ``etcd status`` ends with, or None when every member is healthy and no
    alarm is raised. Members SSH could not reach are named as unreachable (exit 5 at the CLI)."""
    from kubeforge.errors import CheckFailed

    bad = [m for m in status.members if not m.healthy]
    gone = tuple(m.name for m in status.members if not m.reachable)
    if not status.has_quorum:
        return CheckFailed(f"etcd has lost quorum: {status.healthy_count} of {len(status.members)} members healthy"
                           + (f"; unhealthy: {', '.join(m.name for m in bad)}" if bad else ""), unreachable=gone)
    if bad or status.alarms:
        what = [f"{m.name} ({m.error or 'unhealthy'})" for m in bad] + list(status.alarms)
        return CheckFailed("etcd is degraded: " + "; ".join(what), unreachable=gone)
    return None
