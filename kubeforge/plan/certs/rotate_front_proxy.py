"""The plan of ``kubeforge certs rotate-ca --ca front-proxy``: three phases, each rolled over the
control planes one at a time (files pushed, kube-apiserver restarted — drained on kubeforge's haproxy
balancers around it —, that node's API ready and, behind haproxy, the API answering through the
endpoint before the next), each ended by writing the phase down in the local store:

1. ``TrustBothFrontProxyCAs…``: front-proxy-ca.crt (the API server's
   ``--requestheader-client-ca-file``, which it also publishes to aggregated API servers in
   ``kube-system/extension-apiserver-authentication``) holds the old CA and the new one.
2. ``ReissueFrontProxyClients…``: each API server's front-proxy-client (``--proxy-client-cert-file``)
   from the new CA; front-proxy-ca.key becomes the new CA's, first in the file, so a
   ``kubeadm certs renew front-proxy-client`` from now on signs with the new CA; both trusted.
3. ``DropOldFrontProxyCA…``: front-proxy-ca.crt holds the new CA alone; then the store takes it.

At every moment every API server trusts the CA of every front-proxy client certificate any API server
shows: old ones until phase 2 (trusted beside the new CA from phase 1 on), new ones from phase 2 on.
etcd is not touched, so stacked and external etcd are alike. Phases the store records as done are
planned as done (a fresh run after an interrupted one goes on from there; ``--resume`` also skips the
finished steps of the phase under way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeforge.model import Cluster, RenderedFile
from kubeforge.pki.layout import KUBE_PKI
from kubeforge.plan.certs.rotate import WORKFLOW, StageDone, StageOnApiServers, StageRecord
from kubeforge.plan.endpoint.drain import ReadyDrainedApiServers, ready_drained_phases
from kubeforge.plan.phase import Plan
from kubeforge.plan.warning import WarnOperator

FRONT_PROXY_CA_BASE = f"{KUBE_PKI}/front-proxy-ca"
FRONT_PROXY_CA = FRONT_PROXY_CA_BASE + ".crt"
log = logging.getLogger("kubeforge.certs")
# Why kube-apiserver restarts in each phase (the restart steps' titles)
RESTART_WHY = {1: "trusting the old and the new front-proxy CA",
               2: "on a front-proxy client certificate from the new CA",
               3: "trusting the new front-proxy CA alone"}


@dataclass(frozen=True)
class FrontProxyContext:
    cluster: Cluster
    apiservers: Sequence[str]
    apiserver_files: Mapping[int, Mapping[str, Sequence[RenderedFile]]]
    record: Callable[[int], Callable[[], Any]]
    not_set_up: Sequence[str]
    drained_backends: Mapping[str, Sequence[str]]


class FrontProxyNotSetUp(WarnOperator):
    name = "FrontProxyNotSetUp"
    title = "Warning: control planes with no front-proxy CA yet"
    log = log

    def message(self, ctx: FrontProxyContext) -> str:
        return (f"{', '.join(ctx.not_set_up)}: no {FRONT_PROXY_CA} there yet (not set up): nothing to restart; "
                "`up` puts the new CA there")


class FrontProxyStageOnApiServers(StageOnApiServers):
    """Phase ``stage`` on the control planes, one at a time: files, restart, gates."""

    name = "FrontProxyStageOnApiServers"
    why = RESTART_WHY
    if_empty = "no control plane has an API server yet"


class TrustBothFrontProxyCAs(StageDone):
    name = "TrustBothFrontProxyCAs"
    title = "Phase 1/3: trust the old and the new front-proxy CA"
    stage = 1


class TrustBothFrontProxyCAsOnApiServers(FrontProxyStageOnApiServers):
    name = "TrustBothFrontProxyCAsOnApiServers"
    title = "Phase 1/3: API servers trust the old and the new front-proxy CA (one control plane at a time)"
    stage = 1


class RecordTrustBothFrontProxyCAs(StageRecord):
    name = "RecordTrustBothFrontProxyCAs"
    title = "Record front-proxy phase 1/3 done in the local store"
    stage = 1


class ReissueFrontProxyClients(StageDone):
    name = "ReissueFrontProxyClients"
    title = "Phase 2/3: re-issue every front-proxy client certificate from the new CA"
    stage = 2


class ReissueFrontProxyClientsOnApiServers(FrontProxyStageOnApiServers):
    name = "ReissueFrontProxyClientsOnApiServers"
    title = "Phase 2/3: API servers take front-proxy client certificates from the new CA (one control plane at a time)"
    stage = 2


class RecordReissueFrontProxyClients(StageRecord):
    name = "RecordReissueFrontProxyClients"
    title = "Record front-proxy phase 2/3 done in the local store"
    stage = 2


class DropOldFrontProxyCA(StageDone):
    name = "DropOldFrontProxyCA"
    title = "Phase 3/3: trust the new front-proxy CA alone"
    stage = 3


class DropOldFrontProxyCAOnApiServers(FrontProxyStageOnApiServers):
    name = "DropOldFrontProxyCAOnApiServers"
    title = "Phase 3/3: API servers trust the new front-proxy CA alone (one control plane at a time)"
    stage = 3


class RecordDropOldFrontProxyCA(StageRecord):
    name = "RecordDropOldFrontProxyCA"
    title = "Record front-proxy phase 3/3 done; the store takes the new front-proxy CA"
    stage = 3


# Per phase of the rotation: (done earlier, on the API servers, recorded).
STAGES = (
    (TrustBothFrontProxyCAs, TrustBothFrontProxyCAsOnApiServers, RecordTrustBothFrontProxyCAs),
    (ReissueFrontProxyClients, ReissueFrontProxyClientsOnApiServers, RecordReissueFrontProxyClients),
    (DropOldFrontProxyCA, DropOldFrontProxyCAOnApiServers, RecordDropOldFrontProxyCA),
)
# In order; the first two appear only when they have something to do or say.
PHASES = (ReadyDrainedApiServers, FrontProxyNotSetUp, *(p for stage in STAGES for p in stage))


def front_proxy_rotation_plan(
    cluster: Cluster,
    *,
    phases_done: int,
    apiservers: Sequence[str],
    files: Mapping[int, Mapping[str, Sequence[RenderedFile]]],
    record: Callable[[int], Callable[[], Any]],
    not_set_up: Sequence[str] = (),
    drained: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """``files[phase][control plane]``: its front-proxy CA pair (and from phase 2 its front-proxy
    client pair) as they are once ``phase`` is done. ``record(phase)``: the function that writes the
    phase down in the store (phase 3 also hands the store the new CA). ``not_set_up``: control planes
    with no front-proxy CA yet. ``drained``: per haproxy balancer, the API servers an interrupted run
    left drained there."""
    ctx = FrontProxyContext(cluster, apiservers, files, record, not_set_up, drained or {})
    phases = ready_drained_phases(cluster, ctx.drained_backends)
    if not_set_up:
        phases.append(FrontProxyNotSetUp().plan(ctx))
    for n, (done, on_apiservers, recorded) in enumerate(STAGES, 1):
        if n <= phases_done:
            phases.append(done().plan(ctx))
            if n == 3:  # recorded, but the store may not have taken the new CA yet: that step is idempotent
                phases.append(recorded().plan(ctx))
            continue
        phases += [on_apiservers().plan(ctx), recorded().plan(ctx)]
    return Plan(WORKFLOW, tuple(phases))
