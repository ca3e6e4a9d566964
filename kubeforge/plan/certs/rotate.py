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

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubeforge.model import Cluster, RenderedFile
from kubeforge.pki.layout import KUBE_PKI
from kubeforge.plan.certs.renew import APISERVER_ETCD_CLIENT, apiserver_lane, member_lane
from kubeforge.plan.endpoint.drain import ReadyDrainedApiServers, ready_drained_phases
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.steps import LOCAL, LocalStep
from kubeforge.plan.strategy import rolling, serial
from kubeforge.plan.warning import WarnOperator

WORKFLOW = "certs rotate-ca"
APISERVER_ETCD_CA = f"{KUBE_PKI}/etcd/ca.crt"
log = logging.getLogger("kubeforge.certs")
# Why etcd / kube-apiserver restarts in each phase (the restart steps' titles)
RESTART_WHY = {1: "trusting the old and the new etcd CA", 2: "on certificates from the new etcd CA",
               3: "trusting the new etcd CA alone"}


def is_apiserver_file(path: str) -> bool:
    """The files of a control plane this rotation changes: the etcd CA its API server trusts and
    the client pair it shows etcd."""
    return path == APISERVER_ETCD_CA or path.startswith(APISERVER_ETCD_CLIENT + ".")


@dataclass(frozen=True)
class RotationContext:
    cluster: Cluster
    members: Sequence[str]
    apiservers: Sequence[str]
    member_files: Mapping[int, Mapping[str, Sequence[RenderedFile]]]
    apiserver_files: Mapping[int, Mapping[str, Sequence[RenderedFile]]]
    config_files: Mapping[str, Sequence[RenderedFile]]
    record: Callable[[int], Callable[[], Any]]
    not_set_up: Sequence[str]
    drained_backends: Mapping[str, Sequence[str]]


class Recording(Protocol):
    """What a record phase needs of its context (the etcd and the front-proxy rotations alike)."""

    @property
    def record(self) -> Callable[[int], Callable[[], Any]]: ...


class ControlPlanesNotSetUp(WarnOperator):
    name = "ControlPlanesNotSetUp"
    title = "Warning: control planes with no API server etcd client files yet"
    log = log

    def message(self, ctx: RotationContext) -> str:
        return (f"{', '.join(ctx.not_set_up)}: no API server etcd client files there yet (not set up): nothing to "
                "restart; `up` puts the new CA's files there")


class StageDone:
    """A phase the store records as done (a fresh run after an interrupted one goes on from there)."""

    name = "StageDone"
    title = "Phase n/3, done earlier"
    strategy = serial()
    stage = 0

    def plan(self, ctx: object) -> PhasePlan:
        return PhasePlan.noop(self, f"done earlier: the store records phase {self.stage} as done")


class StageOnMembers:
    """Phase ``stage`` on the etcd members, one at a time: files pushed, etcd restarted, gated."""

    name = "StageOnMembers"
    title = "Phase n/3 on the etcd members"
    strategy = rolling()
    stage = 0

    def plan(self, ctx: RotationContext) -> PhasePlan:
        n, why = self.stage, RESTART_WHY[self.stage]
        lanes = [(m, member_lane(ctx.cluster, m, ctx.member_files[n][m], ctx.config_files[m],
                                 restart_title=f"Restart etcd {why}")) for m in ctx.members]
        return PhasePlan.of(self, lanes, reason_if_empty="no etcd member")


class OnApiServers(Protocol):
    """What an API server phase needs of its context (the etcd and the front-proxy rotations alike)."""

    @property
    def cluster(self) -> Cluster: ...
    @property
    def apiservers(self) -> Sequence[str]: ...
    @property
    def apiserver_files(self) -> Mapping[int, Mapping[str, Sequence[RenderedFile]]]: ...


class StageOnApiServers:
    """Phase ``stage`` on the control planes whose API server the rotation touches, one at a time:
    files pushed, kube-apiserver restarted (drained behind kubeforge's haproxy), gated."""

    name = "StageOnApiServers"
    title = "Phase n/3 on the API servers"
    strategy = rolling()
    stage = 0
    why: Mapping[int, str] = RESTART_WHY  # per phase, why kube-apiserver restarts (its step's title)
    if_empty = "no API server talks to etcd yet"

    def lane(self, ctx: OnApiServers, host_name: str) -> list:
        n = self.stage
        return apiserver_lane(ctx.cluster, host_name, ctx.apiserver_files[n][host_name], GATE_TIMEOUT_S,
                              restart_title=f"Restart kube-apiserver {self.why[n]}")

    def plan(self, ctx: OnApiServers) -> PhasePlan:
        lanes = [(cp, self.lane(ctx, cp)) for cp in ctx.apiservers]
        return PhasePlan.of(self, lanes, reason_if_empty=self.if_empty)


class StageRecord:
    """Phase ``stage`` written down in the local store (phase 3 also hands the store the new set)."""

    name = "StageRecord"
    title = "Record phase n/3 done"
    strategy = serial()
    stage = 0

    def plan(self, ctx: Recording) -> PhasePlan:
        step = LocalStep(self.title, ctx.record(self.stage), key=f"record-phase-{self.stage}")
        return PhasePlan.of(self, [(LOCAL, [step])])


class TrustBothCAs(StageDone):
    name = "TrustBothCAs"
    title = "Phase 1/3: trust the old and the new etcd CA"
    stage = 1


class TrustBothCAsOnMembers(StageOnMembers):
    name = "TrustBothCAsOnMembers"
    title = "Phase 1/3: etcd members trust the old and the new etcd CA (one member at a time)"
    stage = 1


class TrustBothCAsOnApiServers(StageOnApiServers):
    name = "TrustBothCAsOnApiServers"
    title = "Phase 1/3: API servers trust the old and the new etcd CA (one control plane at a time)"
    stage = 1


class RecordTrustBothCAs(StageRecord):
    name = "RecordTrustBothCAs"
    title = "Record phase 1/3 done in the local store"
    stage = 1


class ReissueLeaves(StageDone):
    name = "ReissueLeaves"
    title = "Phase 2/3: re-issue every etcd leaf from the new CA"
    stage = 2


class ReissueLeavesOnMembers(StageOnMembers):
    name = "ReissueLeavesOnMembers"
    title = "Phase 2/3: etcd members re-issue every etcd leaf from the new CA (one member at a time)"
    stage = 2


class ReissueLeavesOnApiServers(StageOnApiServers):
    name = "ReissueLeavesOnApiServers"
    title = "Phase 2/3: API servers re-issue every etcd leaf from the new CA (one control plane at a time)"
    stage = 2


class RecordReissueLeaves(StageRecord):
    name = "RecordReissueLeaves"
    title = "Record phase 2/3 done in the local store"
    stage = 2


class DropOldCA(StageDone):
    name = "DropOldCA"
    title = "Phase 3/3: trust the new etcd CA alone"
    stage = 3


class DropOldCAOnMembers(StageOnMembers):
    name = "DropOldCAOnMembers"
    title = "Phase 3/3: etcd members trust the new etcd CA alone (one member at a time)"
    stage = 3


class DropOldCAOnApiServers(StageOnApiServers):
    name = "DropOldCAOnApiServers"
    title = "Phase 3/3: API servers trust the new etcd CA alone (one control plane at a time)"
    stage = 3


class RecordDropOldCA(StageRecord):
    name = "RecordDropOldCA"
    title = "Record phase 3/3 done; the store takes the new etcd CA and leaves"
    stage = 3


# Per phase of the rotation: (done earlier, on the members, on the API servers, recorded).
STAGES = (
    (TrustBothCAs, TrustBothCAsOnMembers, TrustBothCAsOnApiServers, RecordTrustBothCAs),
    (ReissueLeaves, ReissueLeavesOnMembers, ReissueLeavesOnApiServers, RecordReissueLeaves),
    (DropOldCA, DropOldCAOnMembers, DropOldCAOnApiServers, RecordDropOldCA),
)
# In order; the first two appear only when they have something to do or say.
PHASES = (ReadyDrainedApiServers, ControlPlanesNotSetUp, *(p for stage in STAGES for p in stage))


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
    ctx = RotationContext(cluster, members, apiservers, member_files, apiserver_files, config_files, record,
                          not_set_up, drained or {})
    phases = ready_drained_phases(cluster, ctx.drained_backends)
    if not_set_up:
        phases.append(ControlPlanesNotSetUp().plan(ctx))
    for n, (done, on_members, on_apiservers, recorded) in enumerate(STAGES, 1):
        if n <= phases_done:
            phases.append(done().plan(ctx))
            if n == 3:  # recorded, but the store may not have taken the new set yet: that step is idempotent
                phases.append(recorded().plan(ctx))
            continue
        phases += [on_members().plan(ctx), on_apiservers().plan(ctx), recorded().plan(ctx)]
    return Plan(WORKFLOW, tuple(phases))
