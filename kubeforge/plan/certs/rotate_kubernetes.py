"""The plan of ``kubeforge certs rotate-ca --ca kubernetes`` (kubernetes.io's "Manual Rotation of CA
Certificates" for the cluster CA): three phases, each rolled over the control planes one at a time
(files placed; kube-apiserver restarted drained on kubeforge's haproxy balancers, this node's API
ready and the endpoint answering; the controller manager and the scheduler restarted, each healthy;
the kubelet restarted, its own kubeconfig answered and its node Ready) and then over the workers one
at a time or in batches of ``upgrade.maxUnavailable`` (files placed, kubelet restarted, gated), then the cluster's own copies (the kube-public/cluster-info
ConfigMap kubeadm join discovers the cluster with, the operator's local admin kubeconfig), each
ended by writing the phase down in the local store:

1. ``TrustBothClusterCAs…``: the controller manager's CSR signer first pointed at a copy holding the
   old CA alone (SIGNING_CA: it refuses a bundle); then ca.crt (every API server's
   ``--client-ca-file``, every kubelet's ``clientCAFile``, the controller manager's ``--root-ca-file``)
   holds the old CA then the new one, ca.key stays the old one (kubeadm signs with the first
   certificate of the file and this key); every kubeconfig's certificate-authority-data holds both
   (only that line is changed: the client certificates kubeadm issued stay). Then the pods that talk
   to the API with in-cluster config kubeadm deploys (kube-proxy, CoreDNS) are restarted so they read
   the republished kube-root-ca.crt holding both.
2. ``ReissueClusterLeaves…``: ca.crt holds the new CA then the old one, ca.key is the new key and the
   signer's copy the new CA (swapped in together); the API server's serving certificate (same SANs), its kubelet client and
   every kubeconfig's client certificate (kubeadm's subjects) from the new CA; the kubelet's client
   certificate from the new CA (kubelet.conf, or a new file in the kubelet's rotating store with
   kubelet-client-current.pem pointed at it); both CAs still trusted everywhere.
3. ``DropOldClusterCA…``: ca.crt and every kubeconfig's CA data hold the new CA alone, the signer reads
   ca.crt again (its copy removed), each joined node's join configuration pins the new CA; then the
   store takes the new ca.crt/ca.key (so the discovery-token-ca-cert-hash of later joins is the new CA's).

At every moment every client trusts the CA of every serving certificate it may be shown (the API
servers' are old until phase 2, whose clients trust both from phase 1 on) and every server trusts
the CA of every client certificate (old ones until phase 2, trusted beside the new CA from phase 1
on); the old CA is dropped only once no leaf signed by it is left. The kubelets' serving
certificates are self-signed by the kubelet (kubeadm's default), not from this CA: left alone, as
are the service-account keys, the etcd CA and the front-proxy CA. Phases the store records as done
are planned as done (``--resume`` also skips the finished steps of the phase under way).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeforge.facts.kubeconfigs import KUBECONFIG_DIR, KUBELET_CURRENT, KUBELET_PKI, Kubeconfig, NodeKubeconfigs
from kubeforge.model import Cluster, RenderedFile
from kubeforge.model.kubeadm_paths import KUBE_PKI, KUBECTL
from kubeforge.pki.bundle import CertPair
from kubeforge.plan.certs.renew import (
    api_ready,
    api_url,
    put_pairs_together,
    record_applied_entries,
    restart_apiserver,
    static_pod_restarts,
)
from kubeforge.plan.certs.rotate import WORKFLOW, StageDone, StageRecord
from kubeforge.plan.endpoint.drain import ReadyDrainedApiServers, behind_balancers, ready_drained_phases
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
from kubeforge.plan.kubectl import node_ready
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.steps import LOCAL, GateStep, LocalStep, PutFileStep, RunStep
from kubeforge.plan.strategy import batched, rolling, serial
from kubeforge.plan.warning import WarnOperator
from kubeforge.transport.base import Command

log = logging.getLogger("kubeforge.certs")
CA_BASE = f"{KUBE_PKI}/ca"
# The controller manager's CSR signer refuses a CA bundle (``--cluster-signing-cert-file``: "expected 1
# certificate, found 2", kubernetes/kubeadm#1350; kubernetes.io's procedure points the flag at a copy
# holding one CA): during the rotation it reads this file, the CA whose key is ca.key. Not *.crt, so
# `certs check` (which reads pki/*.crt) does not take it for one of kubeadm's; in pki/, the directory
# kubeadm mounts into the controller manager's pod.
SIGNING_CA = f"{KUBE_PKI}/kubeforge-rotation-signing-ca.pem"
CM_MANIFEST = "/etc/kubernetes/manifests/kube-controller-manager.yaml"
SOURCE = "pki"
# the control-plane leaves placed as files (the kubeconfigs' clients are embedded in them)
SERVING = ("apiserver", "apiserver-kubelet-client")
RESTART_WHY = {1: "trusting the old and the new cluster CA", 2: "on certificates from the new cluster CA",
               3: "trusting the new cluster CA alone"}
# kubeadm's in-cluster clients in kube-system: (kind, name); each restarted when it exists
IN_CLUSTER = (("daemonset", "kube-proxy"), ("deployment", "coredns"))


def ca_data_line(bundle: bytes) -> str:
    return "certificate-authority-data: " + base64.b64encode(bundle).decode()


def render_kubeconfig(conf: Kubeconfig, ca_bundle: bytes, client: CertPair) -> bytes:
    """A kubeconfig as kubeadm writes it (one cluster, context and user, the names it had on the host),
    trusting ``ca_bundle``, with ``client`` embedded — or, when the host's kubeconfig named files
    (kubelet.conf pointing into the kubelet's rotating store), naming those files again."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    if conf.client_certificate:
        creds = [f"    client-certificate: {conf.client_certificate}",
                 f"    client-key: {conf.client_key or conf.client_certificate}"]
    else:
        creds = [f"    client-certificate-data: {b64(client.cert_pem)}", f"    client-key-data: {b64(client.key_pem)}"]
    lines = ["apiVersion: v1", "clusters:", "- cluster:", f"    certificate-authority-data: {b64(ca_bundle)}",
             f"    server: {conf.server}", f"  name: {conf.cluster}", "contexts:", "- context:",
             f"    cluster: {conf.cluster}", f"    user: {conf.user}", f"  name: {conf.context}",
             f"current-context: {conf.context}", "kind: Config", "preferences: {}", "users:",
             f"- name: {conf.user}", "  user:", *creds]
    return ("\n".join(lines) + "\n").encode()


def kubeconfig_file(name: str, content: bytes) -> RenderedFile:
    return RenderedFile(path=f"{KUBECONFIG_DIR}/{name}", content=content, mode=0o600, owner="root", group="root",
                        secret=True, source=SOURCE)


def kubelet_pem_path(started: str) -> str:
    """A new file in the kubelet's rotating store, named as the kubelet names its own
    (kubelet-client-<date-time>.pem), from the rotation's start (the same on every resume)."""
    stamp = "".join(c if c.isdigit() else "-" for c in started[:19])
    return f"{KUBELET_PKI}/kubelet-client-{stamp}.pem"


@dataclass(frozen=True)
class NodeWork:
    """What one phase does on one node: ``files`` placed (certificate pairs swapped in together),
    ``ca_data`` written into the certificate-authority-data of ``edit_ca_data`` (phase 1: the kubeconfigs
    keep kubeadm's client certificates), ``kubelet_pem`` placed and kubelet-client-current.pem pointed
    at it; then the node's components restarted."""

    host: str
    control_plane: bool
    files: tuple[RenderedFile, ...] = ()
    edit_ca_data: tuple[str, ...] = ()
    ca_data: bytes = b""
    kubelet_pem: RenderedFile | None = None
    signing: RenderedFile | None = None  # a control plane's signing CA (phases 1, 2); None: ca.crt again


def node_work(phase: int, host: str, control_plane: bool, kubeconfigs: NodeKubeconfigs, ca: CertPair,
              leaf: Callable[[str], CertPair], started: str) -> NodeWork:
    """``ca``: the ca.crt/ca.key pair of this phase (rotation.ca_for_phase); ``leaf(item)``: this host's
    new leaf (rotation.leaf(item, host)). A worker gets ca.crt alone (its kubelet's clientCAFile;
    kubeadm join writes no key there)."""
    files: list[RenderedFile] = [_cert(f"{CA_BASE}.crt", ca.cert_pem)]
    signing = None
    if control_plane:
        files.append(_key(f"{CA_BASE}.key", ca.key_pem))
        if phase < 3:  # the first certificate of ca.crt, the one ca.key belongs to
            first = ca.cert_pem.split(b"-----END CERTIFICATE-----", 1)[0] + b"-----END CERTIFICATE-----\n"
            signing = _cert(SIGNING_CA, first)
    if phase == 1:
        return NodeWork(host, control_plane, tuple(files),
                        tuple(f"{KUBECONFIG_DIR}/{n}" for n in sorted(kubeconfigs.confs)), ca.cert_pem, signing=signing)
    if control_plane and phase == 2:
        for item in SERVING:
            pair = leaf(item)
            files += [_cert(f"{KUBE_PKI}/{item}.crt", pair.cert_pem), _key(f"{KUBE_PKI}/{item}.key", pair.key_pem)]
    pem = None
    for name, conf in sorted(kubeconfigs.confs.items()):
        if name != "kubelet.conf" and not control_plane:
            continue
        client = leaf("kubelet" if name == "kubelet.conf" else name)
        if name == "kubelet.conf" and conf.client_certificate:
            if conf.client_certificate != KUBELET_CURRENT:
                raise ValueError(f"{host}: kubelet.conf names {conf.client_certificate}, not the kubelet's rotating "
                                 f"store ({KUBELET_CURRENT}): not a layout kubeadm writes")
            pem = RenderedFile(path=kubelet_pem_path(started), content=client.cert_pem + client.key_pem, mode=0o600,
                               owner="root", group="root", secret=True, source=SOURCE)
        files.append(kubeconfig_file(name, render_kubeconfig(conf, ca.cert_pem, client)))
    return NodeWork(host, control_plane, tuple(files), (), b"", pem, signing)


def _cert(path: str, pem: bytes) -> RenderedFile:
    return RenderedFile(path=path, content=pem, mode=0o644, owner="root", group="root", source=SOURCE)


def _key(path: str, pem: bytes) -> RenderedFile:
    return RenderedFile(path=path, content=pem, mode=0o600, owner="root", group="root", secret=True, source=SOURCE)


def edit_ca_data(paths: Sequence[str], bundle: bytes) -> tuple[Command, Command]:
    """(the edit, its guard): each kubeconfig's certificate-authority-data set to ``bundle`` (public:
    the CA certificates), nothing else of the file touched; done when every one already says so."""
    line = ca_data_line(bundle)
    files = " ".join(shlex.quote(p) for p in paths)
    edit = (f"for f in {files}; do\n"
            f"  sed -i -E 's#^([[:space:]]*)certificate-authority-data:.*$#\\1{line}#' \"$f\"\n"
            "done")
    # the value's sha256 (sed prints it with its newline), so the plan does not print the bundle twice
    value = line.split(": ", 1)[1]
    want = hashlib.sha256((value + "\n").encode()).hexdigest()
    guard = (f"for f in {files}; do [ \"$(sed -n -E 's/^[[:space:]]*certificate-authority-data:[[:space:]]*//p' \"$f\" "
             f"| sha256sum | cut -c1-64)\" = {want} ] || exit 1; done")
    return (Command(script=edit, sudo=True, timeout=30, description="set the kubeconfigs' certificate-authority-data"),
            Command(script=guard, sudo=True, timeout=30))


def point_signer(at: str) -> tuple[Command, Command]:
    """(the edit, its guard): the controller manager's ``--cluster-signing-cert-file`` in its manifest
    pointed at ``at`` (the kubelet restarts the pod on the change); a manifest without the flag is left."""
    m, flag = shlex.quote(CM_MANIFEST), "--cluster-signing-cert-file="
    edit = (f"[ -e {m} ] || {{ echo 'no {CM_MANIFEST}' >&2; exit 1; }}\n"
            f"sed -i -E 's#({flag})[^[:space:]\"]*#\\1{at}#' {m}")
    guard = f"! grep -q -- {shlex.quote(flag)} {m} || grep -qF -- {shlex.quote(flag + at)} {m}"
    return (Command(script=edit, sudo=True, timeout=30, description="point the controller manager's CSR signer"),
            Command(script=guard, sudo=True, timeout=30))


def link_kubelet_pem(pem: str) -> tuple[Command, Command]:
    """kubelet-client-current.pem pointed at ``pem`` (a symlink, as the kubelet's certificate store keeps
    it: a regular file there stops the kubelet rotating its certificate), replaced atomically."""
    cur, new = shlex.quote(KUBELET_CURRENT), shlex.quote(pem)
    return (Command(script=f"ln -sfn {new} {cur}.kubeforge-next && mv -fT {cur}.kubeforge-next {cur}", sudo=True,
                    timeout=30, description="point the kubelet's current client certificate at the new one"),
            Command(script=f'[ "$(readlink {cur})" = {new} ]', sudo=True, timeout=30))


def restart_kubelet(cluster: Cluster, host: str, via: str, phase: int) -> list:
    """The kubelet restarted (it reads its kubeconfig and clientCAFile when it starts); then its own
    kubeconfig answered by the API (the CA it trusts the API servers with and the client certificate it
    shows them: a Ready condition alone lingers for the node monitor's grace period after a kubelet
    stops reaching the API); then its node Ready, asked on ``via`` (a control plane, admin kubeconfig)."""
    kubelet_conf = f"{KUBECONFIG_DIR}/kubelet.conf"
    answers = Command(script=f"kubectl --kubeconfig {kubelet_conf} get node {shlex.quote(host)} >/dev/null", sudo=True,
                      timeout=30)
    return [RunStep(host, Command(script="systemctl restart kubelet", sudo=True, timeout=120,
                                  description="restart the kubelet"),
                    f"Restart the kubelet {RESTART_WHY[phase]}", key=f"restart-kubelet-{host}"),
            GateStep(host, answers, "Wait for the kubelet's kubeconfig to be answered",
                     what=f"the API answering {host} as its kubelet (kubelet.conf's CA and client certificate)",
                     timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-kubelet-conf-{host}"),
            GateStep(via, Command(script=node_ready(host), sudo=True, timeout=30), f"Wait for node {host} Ready",
                     what=f"node {host} Ready after its kubelet restarted", timeout_s=GATE_TIMEOUT_S, interval_s=2.0,
                     key=f"gate-node-{host}")]


def node_lane(cluster: Cluster, work: NodeWork, phase: int, via: str) -> list:
    """Files, kubeconfig edits and the kubelet's pem; applied.json; then on a control plane the API
    server (drained behind kubeforge's haproxy, gated), the controller manager and the scheduler (gated
    on /healthz); then the kubelet (node Ready)."""
    h = work.host
    steps: list = []
    if phase == 1 and work.signing is not None:
        # the signer moved to a one-CA file (the old CA, ca.key's) before ca.crt holds two
        edit, guard = point_signer(SIGNING_CA)
        steps += [PutFileStep(h, work.signing, title="Write the controller manager's signing CA (the old CA alone)"),
                  RunStep(h, edit, "Point the controller manager's CSR signer at the one-CA file", unless=guard,
                          key="signer-to-file")]
        steps += put_pairs_together(h, list(work.files))
    elif work.signing is not None:  # phase 2: swapped in with ca.crt and ca.key (the new CA's)
        steps += put_pairs_together(h, [*work.files, work.signing], also=(SIGNING_CA,))
    else:
        steps += put_pairs_together(h, list(work.files))
    if phase == 3 and work.control_plane:
        edit, guard = point_signer(f"{CA_BASE}.crt")
        gone = shlex.quote(SIGNING_CA)
        steps += [RunStep(h, edit, "Point the controller manager's CSR signer at ca.crt again (the new CA alone)",
                          unless=guard, key="signer-to-ca"),
                  RunStep(h, Command(script=f"rm -f -- {gone}", sudo=True, timeout=30,
                                     description="remove the signing CA copy"),
                          "Remove the controller manager's signing CA copy",
                          unless=Command(script=f"[ ! -e {gone} ]", sudo=True, timeout=30), key="signer-file-gone")]
    if work.edit_ca_data:
        edit, guard = edit_ca_data(work.edit_ca_data, work.ca_data)
        steps.append(RunStep(h, edit, "Set every kubeconfig's certificate-authority-data to both cluster CAs",
                             unless=guard, key="kubeconfig-ca-data"))
    if work.kubelet_pem is not None:
        link, linked = link_kubelet_pem(work.kubelet_pem.path)
        steps += [PutFileStep(h, work.kubelet_pem, title="Write the kubelet's new client certificate"),
                  RunStep(h, link, "Point kubelet-client-current.pem at the new client certificate", unless=linked,
                          key="link-kubelet-pem")]
    steps.append(record_applied_entries(h, list(work.files)))
    if work.control_plane:
        host = cluster.host(h)
        restart = RunStep(h, restart_apiserver(host), f"Restart kube-apiserver {RESTART_WHY[phase]}",
                          key="restart-apiserver")
        gate = GateStep(h, api_ready(host), "Wait for the API ready",
                        what=f"the API server of {h} ready at {api_url(host)} after its restart",
                        timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-api-{h}")
        steps += behind_balancers(cluster, host, [restart, gate], GATE_TIMEOUT_S)
        steps += static_pod_restarts(cluster, h, ("controller-manager.conf", "scheduler.conf"),
                                     ("kube-controller-manager", "kube-scheduler"), why=RESTART_WHY[phase])
    return steps + restart_kubelet(cluster, h, via, phase)


@dataclass(frozen=True)
class ClusterCAContext:
    cluster: Cluster
    control_planes: Sequence[str]  # set up: an API server and the cluster CA there
    workers: Sequence[str]  # set up: a kubelet.conf there
    work: Mapping[int, Mapping[str, NodeWork]]  # per phase, per node
    cluster_info: Mapping[int, bytes]  # per phase, the kube-public/cluster-info ConfigMap applied
    local_admin: Callable[[int], Callable[[], Any]]  # per phase, the local admin kubeconfig's update
    record: Callable[[int], Callable[[], Any]]
    not_set_up: Sequence[str] = ()
    drained_backends: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def via(self) -> str:
        return self.control_planes[0]


class ClusterCANodesNotSetUp(WarnOperator):
    name = "ClusterCANodesNotSetUp"
    title = "Warning: nodes not set up yet"
    log = log

    def message(self, ctx: ClusterCAContext) -> str:
        return (f"{', '.join(ctx.not_set_up)}: no cluster CA or kubelet.conf there yet (not set up): nothing to "
                "restart; `up` sets them up from the new CA once the rotation is committed")


class ClusterCAOnControlPlanes:
    """Phase ``stage`` on the control planes set up, one at a time (each asks its own node Ready)."""

    name = "ClusterCAOnControlPlanes"
    title = "Phase n/3 on the control planes"
    strategy = rolling()
    stage = 0
    if_empty = "no control plane is set up"

    def nodes(self, ctx: ClusterCAContext) -> list[tuple[str, str]]:
        return [(cp, cp) for cp in ctx.control_planes]

    def plan(self, ctx: ClusterCAContext) -> PhasePlan:
        lanes = [(h, node_lane(ctx.cluster, ctx.work[self.stage][h], self.stage, via)) for h, via in self.nodes(ctx)]
        return PhasePlan.of(self, lanes, reason_if_empty=self.if_empty)


class ClusterCAOnWorkers(ClusterCAOnControlPlanes):
    """Phase ``stage`` on the workers set up, in batches of the inventory's ``upgrade.maxUnavailable``
    (1 by default: one at a time), each node asked Ready on a control plane. A kubelet restart moves no
    pod, so no drain: the batch size bounds how many nodes a wrong file could take out at once."""

    name = "ClusterCAOnWorkers"
    title = "Phase n/3 on the workers"
    strategy = rolling()
    if_empty = "no worker is set up"

    def nodes(self, ctx: ClusterCAContext) -> list[tuple[str, str]]:
        return [(w, ctx.via) for w in ctx.workers]

    def title_for(self, size: int) -> str:
        return self.title if size == 1 else self.title.replace("(one worker at a time)", f"(batches of {size})")

    def plan(self, ctx: ClusterCAContext) -> PhasePlan:
        size = max(1, ctx.cluster.upgrade.batch_size(len(ctx.workers)))
        lanes = [(h, node_lane(ctx.cluster, ctx.work[self.stage][h], self.stage, via)) for h, via in self.nodes(ctx)]
        return PhasePlan.of(self, lanes, strategy=batched(size) if size > 1 else rolling(), title=self.title_for(size),
                            reason_if_empty=self.if_empty)


def apply_cluster_info(configmap: bytes) -> Command:
    return Command(script=f"{KUBECTL} apply -f - >/dev/null", stdin=configmap, sudo=True, timeout=60,
                   description="apply kube-public/cluster-info")


def restart_in_cluster_clients() -> Command:
    lines = ["set -e"]
    for kind, name in IN_CLUSTER:
        lines += [f"if {KUBECTL} -n kube-system get {kind} {name} >/dev/null 2>&1; then",
                  f"  {KUBECTL} -n kube-system rollout restart {kind}/{name}",
                  f"  {KUBECTL} -n kube-system rollout status {kind}/{name} --timeout=300s",
                  "fi"]
    return Command(script="\n".join(lines), sudo=True, timeout=660,
                   description="restart kube-proxy and CoreDNS (in-cluster config)")


class ClusterCACopies:
    """The cluster's copies of the CA beside the nodes': cluster-info (join discovery) and the local
    admin kubeconfig; after phase 1 also the in-cluster clients kubeadm deploys restarted."""

    name = "ClusterCACopies"
    title = "Phase n/3: cluster-info and the local admin kubeconfig"
    strategy = serial()
    stage = 0

    def plan(self, ctx: ClusterCAContext) -> PhasePlan:
        n = self.stage
        steps: list = [RunStep(ctx.via, apply_cluster_info(ctx.cluster_info[n]),
                               "Set kube-public/cluster-info's CA to " + ("both cluster CAs" if n < 3 else "the new one"),
                               key=f"cluster-info-{n}")]
        if n == 1:
            steps.append(RunStep(ctx.via, restart_in_cluster_clients(),
                                 "Restart kube-proxy and CoreDNS so they trust both cluster CAs", key="in-cluster-restart"))
        lanes: list = [(ctx.via, steps), (LOCAL, [LocalStep("Update the local admin kubeconfig", ctx.local_admin(n),
                                                            key=f"local-admin-{n}")])]
        return PhasePlan.of(self, lanes, reason_if_empty="no control plane is set up")


def _stage(base: type, name: str, title: str, stage: int) -> type:
    return type(name, (base,), {"name": name, "title": title, "stage": stage})


STEMS = (
    ("TrustBothClusterCAs", "trust the old and the new cluster CA"),
    ("ReissueClusterLeaves", "re-issue every leaf of the cluster CA from the new CA"),
    ("DropOldClusterCA", "trust the new cluster CA alone"),
)
STAGES = tuple(
    (_stage(StageDone, stem, f"Phase {n}/3: {what}", n),
     _stage(ClusterCAOnControlPlanes, f"{stem}OnControlPlanes", f"Phase {n}/3 on the control planes: {what} "
                                                       "(one control plane at a time)", n),
     _stage(ClusterCAOnWorkers, f"{stem}OnWorkers", f"Phase {n}/3 on the workers: {what} (one worker at a time)", n),
     _stage(ClusterCACopies, f"{stem}Copies", f"Phase {n}/3 in cluster-info and the local admin kubeconfig", n),
     _stage(StageRecord, f"Record{stem}", f"Record cluster CA phase {n}/3 done in the local store"
            + ("; the store takes the new cluster CA" if n == 3 else ""), n))
    for n, (stem, what) in enumerate(STEMS, 1))
PHASES = (ReadyDrainedApiServers, ClusterCANodesNotSetUp, *(p for stage in STAGES for p in stage))


def cluster_ca_rotation_plan(cluster: Cluster, *, phases_done: int, control_planes: Sequence[str],
                             workers: Sequence[str], work: Mapping[int, Mapping[str, NodeWork]],
                             cluster_info: Mapping[int, bytes], local_admin: Callable[[int], Callable[[], Any]],
                             record: Callable[[int], Callable[[], Any]], not_set_up: Sequence[str] = (),
                             drained: Mapping[str, Sequence[str]] | None = None) -> Plan:
    """``work[phase][node]``: what each phase does there (node_work). ``cluster_info[phase]``: the
    ConfigMap applied at the end of the phase; ``local_admin(phase)`` / ``record(phase)``: the functions
    that update the local admin kubeconfig and write the phase down in the store (phase 3 also hands
    the store the new CA). ``drained``: per haproxy balancer, what an interrupted run left drained."""
    ctx = ClusterCAContext(cluster, control_planes, workers, work, cluster_info, local_admin, record, not_set_up,
                           drained or {})
    phases = ready_drained_phases(cluster, ctx.drained_backends)
    if not_set_up:
        phases.append(ClusterCANodesNotSetUp().plan(ctx))
    for n, (done, on_cps, on_workers, copies, recorded) in enumerate(STAGES, 1):
        if n <= phases_done:
            phases.append(done().plan(ctx))
            if n == 3:  # recorded, but the store may not have taken the new CA yet: that step is idempotent
                phases.append(recorded().plan(ctx))
            continue
        phases += [on_cps().plan(ctx), on_workers().plan(ctx), copies().plan(ctx), recorded().plan(ctx)]
    return Plan(WORKFLOW, tuple(phases))
