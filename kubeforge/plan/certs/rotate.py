"""The plan of ``kubeforge certs rotate-ca --ca etcd``: three phases, each rolled over the etcd members
one at a time (files pushed, etcd restarted, every member healthy under one leader before the next)
and then over the control planes whose API server talks to etcd (files pushed, kube-apiserver
restarted, that node's API ready before the next), each ended by writing the phase down in the
local store:

1. ``TrustBothCAs…``: the CA file holds the old CA and the new one; leaves unchanged.
2. ``ReissueLeaves…``: every etcd leaf (member server and peer, the health-check client kubeforge's
   etcdctl uses for status and backups, the API server's etcd client) from the new CA; both trusted.
3. ``DropOldCA…``: the CA file holds the new CA alone; then the store takes the new set.

At every moment each member and API server trusts the CA of every certificate it is shown: a
member's peers and clients are either still old (phase 1, trusted beside the new one) or already
new (trusted from phase 1 on), and the old CA is dropped only once no leaf signed by it is left.
Phases the store records as done are planned as done (a fresh run after an interrupted one goes on
from there; ``--resume`` also skips the finished steps of the phase under way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubeforge.model import Cluster, RenderedFile
from kubeforge.pki.layout import KUBE_PKI
from kubeforge.plan.certs.renew import APISERVER_ETCD_CLIENT, apiserver_lane, member_lane
from kubeforge.plan.endpoint.drain import ready_drained_phases
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
from kubeforge.plan.etcd.upgrade import warning_phase
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.steps import LOCAL, LocalStep
from kubeforge.plan.strategy import rolling, serial

WORKFLOW = "certs rotate-ca"
APISERVER_ETCD_CA = f"{KUBE_PKI}/etcd/ca.crt"
# (phase number, name stem, what the hosts hold once it is done, why etcd / kube-apiserver restarts)
STAGES = (
    (1, "TrustBothCAs", "trust the old and the new etcd CA", "trusting the old and the new etcd CA"),
    (2, "ReissueLeaves", "re-issue every etcd leaf from the new CA", "on certificates from the new etcd CA"),
    (3, "DropOldCA", "trust the new etcd CA alone", "trusting the new etcd CA alone"),
)


def is_apiserver_file(path: str) -> bool:
    """The files of a control plane this rotation changes: the etcd CA its API server trusts and
    the client pair it shows etcd."""
    return path == APISERVER_ETCD_CA or path.startswith(APISERVER_ETCD_CLIENT + ".")


def rotation_plan(
    cluster: Cluster,
    *,
    phases_done: int,
    members: Sequence[str],
    apiservers: Sequence[str],
    member_files: Mapping[int, Mapping[str, Sequence[RenderedFile]]],
    apiserver_files: Mapping[int, Mapping[str, Sequence[RenderedFile]]],
    config_files: Mapping[str, Sequence[RenderedFile]],
    record: Callable[[int], Callable[[], Any]],
    not_set_up: Sequence[str] = (),
    drained: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """``member_files[phase][member]``: its /etc/etcd PKI files as they are once ``phase`` is done;
    ``apiserver_files[phase][control plane]``: its etcd CA and client pair likewise.
    ``config_files``: each member's etcd.env + unit as in place (for the applied-config stamp).
    ``record(phase)``: the function that writes the phase down in the store (phase 3 also hands
    the store the new set). ``not_set_up``: control planes with no API server to restart yet.
    ``drained``: per haproxy balancer, the API servers an interrupted run left drained there."""
    phases: list[PhasePlan] = ready_drained_phases(cluster, drained or {})
    if not_set_up:
        phases.append(warning_phase(
            f"{', '.join(not_set_up)}: no API server etcd client files there yet (not set up): nothing to "
            "restart; `up` puts the new CA's files there", name="ControlPlanesNotSetUp"))
    for n, stem, what, why in STAGES:
        title = (f"Record phase {n}/3 done in the local store" if n < 3
                 else "Record phase 3/3 done; the store takes the new etcd CA and leaves")
        record_phase = PhasePlan.of(name=f"Record{stem}", title=title, strategy=serial(),
                                    lanes=[(LOCAL, [LocalStep(title, record(n), key=f"record-phase-{n}")])])
        if n <= phases_done:
            phases.append(PhasePlan.of(name=f"{stem}", title=f"Phase {n}/3: {what}", strategy=serial(),
                                       reason_if_empty=f"done earlier: the store records phase {n} as done"))
            if n == 3:  # recorded, but the store may not have taken the new set yet: that step is idempotent
                phases.append(record_phase)
            continue
        phases.append(PhasePlan.of(
            name=f"{stem}OnMembers", title=f"Phase {n}/3: etcd members {what} (one member at a time)",
            strategy=rolling(),
            lanes=[(m, member_lane(cluster, m, member_files[n][m], config_files[m], restart_title=f"Restart etcd {why}"))
                   for m in members],
            reason_if_empty="no etcd member"))
        phases.append(PhasePlan.of(
            name=f"{stem}OnApiServers",
            title=f"Phase {n}/3: API servers {what} (one control plane at a time)",
            strategy=rolling(),
            lanes=[(cp, apiserver_lane(cluster, cp, apiserver_files[n][cp], GATE_TIMEOUT_S,
                                       restart_title=f"Restart kube-apiserver {why}")) for cp in apiservers],
            reason_if_empty="no API server talks to etcd yet"))
        phases.append(record_phase)
    return Plan(WORKFLOW, tuple(phases))
