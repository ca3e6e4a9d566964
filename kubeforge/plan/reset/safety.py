"""Which subsets of hosts may be reset without breaking what stays: pure rules, one message each."""

from __future__ import annotations

from collections.abc import Sequence

from kubeforge.errors import SafetyRefusal
from kubeforge.model import Cluster, Host
from kubeforge.plan.etcd.membership import quorum


def check_reset_selection(cluster: Cluster, selected: Sequence[Host]) -> None:
    """Refuse a reset that would leave the rest of the cluster broken; resetting every host is
    always allowed (the cluster goes away as a whole)."""
    names = {h.name for h in selected}
    if names >= {h.name for h in cluster.hosts}:
        return
    members = cluster.etcd_members
    leaving = [m.name for m in members if m.name in names]
    if leaving:
        staying = len(members) - len(leaving)
        if staying < quorum(len(members)):
            raise SafetyRefusal(
                f"resetting {', '.join(leaving)} leaves {staying} of {len(members)} etcd members: "
                f"below quorum ({quorum(len(members))}), the cluster would stop",
                hint="reset fewer etcd members at a time (remove them with the etcd workflow), or reset every host",
            )
    first = cluster.first_control_plane
    if first.name in names:
        raise SafetyRefusal(
            f"{first.name} is the first control plane (kubeadm init ran there, kubeforge's lock lives there): "
            "it can only be reset together with every host",
            hint="reset the other hosts, or pass every host (or no --hosts) to reset the whole cluster",
        )
