"""The plan of ``kubeforge certs renew``: etcd members one at a time (leaf files from the store,
pushed, etcd restarted, the cluster healthy with one leader before the next member), then the
applied-config stamp so a later ``etcd install`` sees nothing to do; then control planes one at a
time: the API server's etcd client certificate from the store (external etcd), ``kubeadm certs
renew`` for kubeadm's certificates that expire, and each static pod that reads a renewed one
restarted by moving its manifest out of the kubelet's sight and back, gated: a stacked etcd member
(every member healthy under one leader), the kube-apiserver (this node's API ready), the controller
manager and the scheduler (their /healthz), all before the next control plane.

What expires but is not renewed by this plan (kubeadm's certificates, CAs, the kubelet's) is a
warning phase at the top of the plan, so the operator sees it in the plan, the prompt and the log.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from kubeforge.facts.etcdctl import client_url, etcdctl_line
from kubeforge.model import Cluster, EtcdTopology, RenderedFile
from kubeforge.pki.layout import ETCD_PKI, KUBE_PKI
from kubeforge.plan.certs.compare import HostReport
from kubeforge.plan.endpoint.drain import ReadyDrainedApiServers, behind_balancers, ready_drained_phases
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S, config_sha, stamp_file
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.plan.strategy import rolling
from kubeforge.plan.warning import WarnOperator
from kubeforge.render.endpoint import APISERVER_PORT
from kubeforge.render.record import RECORD_PATH
from kubeforge.transport.base import Command

WORKFLOW = "certs renew"
log = logging.getLogger("kubeforge.certs")
MEMBER_ITEMS = ("etcd-server", "etcd-peer")
APISERVER_ETCD_CLIENT = f"{KUBE_PKI}/apiserver-etcd-client"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
APISERVER_ASIDE = "/etc/kubernetes/kube-apiserver.yaml.kubeforge-certs"  # where restart_static_pod puts it
# How long the kubelet may take to stop the pod once its manifest is gone: it looks at the manifest
# directory every fileCheckFrequency (20 s by default), then stops the container.
STOP_TIMEOUT_S = 90
# Every certificate kubeadm lists (`kubeadm certs check-expiration`) is renewed with `kubeadm certs
# renew <name>`, then the static pods that read it are restarted, because kubeadm restarts nothing
# (kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-certs, "Manual certificate renewal").
# Per static pod, the names whose renewal restarts it, in the order the lane restarts them: etcd first
# (stacked; its own API server reads it on 127.0.0.1), then the API server, then its two clients.
# admin.conf and super-admin.conf need no restart (each kubectl reads them afresh); nor does
# etcd-healthcheck-client (only probes and etcdctl present it, each reading the file).
RESTARTED_BY = (
    ("etcd", ("etcd-server", "etcd-peer")),
    ("kube-apiserver", ("apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client")),
    ("kube-controller-manager", ("controller-manager.conf",)),
    ("kube-scheduler", ("scheduler.conf",)),
)
KUBEADM_RENEWED = ("admin.conf", "super-admin.conf", "etcd-healthcheck-client",
                   *(n for _, names in RESTARTED_BY for n in names))
# the names kubeadm lists only with a local (stacked) etcd
LOCAL_ETCD = {"apiserver-etcd-client", "etcd-server", "etcd-peer", "etcd-healthcheck-client"}
# kubeadm's secure ports for the two components (their liveness probes ask /healthz there)
HEALTH_PORTS = {"kube-controller-manager": 10257, "kube-scheduler": 10259}


@dataclass(frozen=True)
class RenewSelection:
    """What the renewal touches, decided from a HostReport: members whose etcd leaves are pushed
    again, and what expires that this version of kubeforge does not renew (with why)."""

    members: tuple[str, ...]
    not_renewed: tuple[str, ...]
    apiservers: tuple[str, ...] = ()  # control planes whose API server etcd client cert is pushed
    kubeadm: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (control plane, kubeadm names to renew there)

    @property
    def restarts_etcd_pods(self) -> bool:
        """A stacked member restarts on renewed certificates (the run needs a healthy etcd first)."""
        return any(set(names) & set(dict(RESTARTED_BY)["etcd"]) for _, names in self.kubeadm)

    @property
    def control_planes(self) -> tuple[str, ...]:
        """Every control plane this run touches (the rolling order)."""
        return tuple(dict.fromkeys([*self.apiservers, *(cp for cp, _ in self.kubeadm)]))


def select(cluster: Cluster, report: HostReport, *, renew_all: bool = False,
           hosts: Sequence[str] | None = None) -> RenewSelection:
    wanted = set(hosts) if hosts is not None else None
    members: list[str] = []
    left: list[str] = []
    for m in cluster.etcd_members:
        if wanted is not None and m.name not in wanted:
            continue
        ours = [f for f in report.findings if f.cert.host == m.name and f.owner.kind == "store"
                and f.cert.path.startswith(ETCD_PKI + "/")]
        if renew_all and ours or any(f.expiring for f in ours):
            members.append(m.name)
    apiservers: list[str] = []
    for cp in cluster.control_planes:
        if wanted is not None and cp.name not in wanted:
            continue
        client = [f for f in report.findings if f.cert.host == cp.name and f.owner.kind == "store"
                  and f.cert.path == APISERVER_ETCD_CLIENT + ".crt"]
        # "differs": the store re-issued it (a run stopped before pushing, or `--all --hosts` elsewhere)
        if renew_all and client or any(f.expiring or f.store == "differs" for f in client):
            apiservers.append(cp.name)
    kubeadm: list[tuple[str, tuple[str, ...]]] = []
    # kubeadm lists the etcd names only with a local (stacked) etcd; elsewhere such a file is a leftover
    renewable = set(KUBEADM_RENEWED) if cluster.etcd.topology is EtcdTopology.STACKED else set(KUBEADM_RENEWED) - LOCAL_ETCD
    for cp in cluster.control_planes:
        if wanted is not None and cp.name not in wanted:
            continue
        names = tuple(f.owner.item for f in report.findings if f.cert.host == cp.name and f.owner.kind == "kubeadm"
                      and f.owner.item in renewable and (renew_all or f.expiring))
        if names:
            kubeadm.append((cp.name, names))
    renewing = {(cp, n) for cp, names in kubeadm for n in names}
    for f in report.expiring:
        if wanted is not None and f.cert.host not in wanted:
            continue
        if f.owner.kind == "kubeadm" and (f.cert.host, f.owner.item) in renewing:
            continue
        if f.owner.kind == "store" and (f.cert.host in members and f.cert.path.startswith(ETCD_PKI + "/")
                                        or f.cert.host in apiservers and f.cert.path.startswith(APISERVER_ETCD_CLIENT)):
            continue
        why = {
            "ca": "a CA: only a CA rotation renews it (`certs rotate-ca --ca etcd|front-proxy|kubernetes`; stacked "
                  "etcd's CA is not rotated yet)",
            "kubeadm": "kubeadm's, but kubeadm renews it only on a control plane (the etcd ones only with a "
                       "local, stacked etcd)",
            "kubelet": "the kubelet's own: it renews its client certificate itself (rotateCertificates: true in the "
                       "KubeletConfiguration kubeforge renders) once 70-90% of its life has passed",
            "store": "kubeforge's, but not one this run pushes",
        }.get(f.owner.kind, "not a certificate kubeforge knows how to renew")
        left.append(f"{f.cert.host}: {f.cert.path} (until {f.cert.not_after:%Y-%m-%d}): {why}")
    return RenewSelection(tuple(members), tuple(left), tuple(apiservers), tuple(kubeadm))


STAGED = ".kubeforge-next"


def put_pairs_together(host_name: str, files: Sequence[RenderedFile], also: Sequence[str] = ()) -> list:
    """Put ``files``, each certificate with its key (``x.crt`` beside ``x.key``) swapped in together.
    etcd reads its certificate files afresh for every TLS handshake, so a certificate beside a key
    from another issue (a run stopped between the two puts; the engine lets the step in flight
    finish, so two puts can always be split) stops the member serving at once, and a renewal or
    rotation could never be resumed past its health gate. Each pair is written beside its place
    first (``<path>.kubeforge-next``, atomically, with the final mode), then one step renames every
    staged file into place; that step runs again on resume while a staged file is left. ``also``:
    other paths of ``files`` swapped in with the pairs (a certificate read with a key of another name)."""
    paths = {f.path for f in files}
    paired = {f.path for f in files
              if f.path.endswith(".crt") and f.path[:-4] + ".key" in paths
              or f.path.endswith(".key") and f.path[:-4] + ".crt" in paths or f.path in also}
    steps: list = [PutFileStep(host_name, f) for f in files if f.path not in paired]
    staged = [f for f in files if f.path in paired]
    if not staged:
        return steps
    steps += [PutFileStep(host_name, replace(f, path=f.path + STAGED), title=f"Stage {f.path}") for f in staged]
    tests = " || ".join(f"[ -e {shlex.quote(f.path + STAGED)} ]" for f in staged)
    moves = "".join(f"if [ -e {shlex.quote(f.path + STAGED)} ]; then mv -f -- {shlex.quote(f.path + STAGED)} "
                    f"{shlex.quote(f.path)}; fi\n" for f in staged)
    steps.append(RunStep(host_name, Command(script=moves, sudo=True, timeout=60,
                                            description="swap in certificate and key pairs"),
                         "Swap in each new certificate with its key",
                         unless=Command(script=f"! {{ {tests}; }}", sudo=True, timeout=30),
                         key="swap-pairs-" + "-".join(sorted(f.path.rsplit("/", 1)[1] for f in staged))))
    return steps


def record_applied_entries(host_name: str, files: Sequence[RenderedFile]) -> RunStep:
    """The entries of ``files`` in the host's applied.json (what kubeforge placed there) set to their new
    sha256, the rest of the record as it is: ``up`` afterwards finds them applied (nothing to put, no
    record to rewrite) and ``facts`` sees no file changed behind kubeforge's back. An entry the record
    lacks stays absent; a host without a record is left so. The record is kubeforge's own JSON
    (``json.dumps(indent=2, sort_keys=True)``: one ``"path": "sha256"`` entry per line). Planned by
    every lane that places certificates (renewal, each CA rotation's phases)."""
    record = shlex.quote(RECORD_PATH)
    edits = " ".join(f"-e {shlex.quote(_entry_sed(f))}" for f in files)
    # done when each entry has its new sha256 or is not in the record at all
    settled = " && ".join(f"{{ grep -qF {shlex.quote(_entry(f))} {record} || ! grep -qF {shlex.quote(_key(f))} {record}; }}"
                          for f in files)
    return RunStep(host_name, Command(script=f"[ ! -e {record} ] || sed -i -E {edits} {record}", sudo=True, timeout=30,
                                      description="record the placed certificates in applied.json"),
                   "Record the placed certificates in applied.json",
                   unless=Command(script=f"[ ! -e {record} ] || {{ {settled}; }}", sudo=True, timeout=30),
                   key="record-applied-certs")


def _key(f: RenderedFile) -> str:
    return f'"{f.path}": "'


def _entry(f: RenderedFile) -> str:
    return f'"{f.path}": "{f.sha256}"'


def _entry_sed(f: RenderedFile) -> str:
    path = re.sub(r"([][.*+?(){}|^$\\])", r"\\\1", f.path)  # a literal in sed's extended regex
    return f's#^( *"{path}": )"[0-9a-f]{{64}}"#\\1"{f.sha256}"#'


def member_lane(cluster: Cluster, host_name: str, pki_files: Sequence[RenderedFile],
                config_files: Sequence[RenderedFile], *,
                restart_title: str = "Restart etcd on its renewed certificates") -> list:
    """Put the member's etcd PKI files (unchanged ones are skipped by sha256), restart etcd, wait
    until every member is healthy under one leader, record the applied configuration."""
    members = cluster.etcd_members
    steps: list = put_pairs_together(host_name, pki_files)
    if pki_files:
        steps.append(record_applied_entries(host_name, pki_files))
    steps.append(RunStep(host_name, cmd.systemctl("restart", "etcd", timeout=180), restart_title, key="restart-etcd"))
    steps.append(PutFileStep(host_name, stamp_file(config_sha([*pki_files, *config_files])),
                             title="Record the applied etcd configuration"))
    steps.append(GateStep(host_name, cmd.cluster_healthy(cluster, members), "Wait for etcd healthy",
                          what=f"etcd healthy on {len(members)} member{'s' if len(members) != 1 else ''} "
                               f"with one leader after {host_name} restarted",
                          timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-{host_name}"))
    return steps


def api_url(host) -> str:
    """The API server of this one control plane (where kubeadm's advertiseAddress puts it)."""
    return f"https://{host.internal_address}:{APISERVER_PORT}"


def api_ready(host) -> Command:
    """This node's own API server answers ready: ``--server`` so kubectl asks no other one."""
    return Command(script=f"kubectl --kubeconfig {ADMIN_CONF} --server {shlex.quote(api_url(host))} "
                          "get --raw /readyz >/dev/null", sudo=True, timeout=30)


def restart_static_pod(component: str, probe: Command) -> Command:
    """Restart a static pod as kubeadm's docs have it: once it answers (``probe`` succeeds), the
    manifest out of the kubelet's sight until the pod is gone (``probe`` fails), then back. The
    manifest goes back whatever happened, and a run interrupted with it aside puts it back on resume."""
    manifest = f"/etc/kubernetes/manifests/{component}.yaml"
    # outside manifests/ (the kubelet watches only that directory), named for this workflow so a
    # restore's aside file is never mistaken for it
    m, a = shlex.quote(manifest), shlex.quote(f"/etc/kubernetes/{component}.yaml.kubeforge-certs")
    answers = f"{{ {probe.script}; }} >/dev/null 2>&1"
    script = "\n".join([
        f"if [ -e {m} ]; then",
        # answering first, so that its silence afterwards is the stop: a probe failing for another
        # reason (the API server of a stacked member that just restarted, still reconnecting) would
        # otherwise pass for the stop and put the manifest back before the kubelet saw it gone
        "  up=0",
        f"  for i in $(seq 1 {STOP_TIMEOUT_S * 2}); do if {answers}; then up=1; break; fi; sleep 0.5; done",
        f"  [ $up = 1 ] || {{ echo 'the {component} static pod did not answer for {STOP_TIMEOUT_S}s before its "
        "restart; its manifest was left in place' >&2; exit 1; }",
        f"  mv -f {m} {a}",
        f"elif [ ! -e {a} ]; then echo 'no {manifest}' >&2; exit 1; fi",
        "gone=0",
        f"for i in $(seq 1 {STOP_TIMEOUT_S * 2}); do",
        f"  if ! {answers}; then gone=1; break; fi",
        "  sleep 0.5",
        "done",
        f"mv -f {a} {m}",
        f"[ $gone = 1 ] || {{ echo 'the {component} static pod still answered {STOP_TIMEOUT_S}s after its manifest "
        "was moved away (the manifest is back)' >&2; exit 1; }",
    ])
    return Command(script=script, sudo=True, timeout=2 * STOP_TIMEOUT_S + 60,
                   description=f"restart the {component} static pod")


def restart_apiserver(host) -> Command:
    """Restart the kube-apiserver static pod: gone when this node's API stops answering."""
    return restart_static_pod("kube-apiserver", api_ready(host))


def component_healthy(component: str) -> Command:
    """kube-controller-manager's or kube-scheduler's /healthz on this node (its self-signed serving
    certificate is not verified, as the kubelet's liveness probe does not verify it)."""
    url = f"https://127.0.0.1:{HEALTH_PORTS[component]}/healthz"
    script = (f"command -v curl >/dev/null || {{ echo 'curl is needed to ask {url}' >&2; exit 1; }}\n"
              f"curl -fsSk --max-time 5 {url} >/dev/null")
    return Command(script=script, sudo=False, timeout=15, description=f"{component} healthy")


def static_pod_restarts(cluster: Cluster, host_name: str, kubeadm_names: Sequence[str],
                        components: Sequence[str], *, why: str = "on its renewed kubeconfig") -> list:
    """After ``kubeadm certs renew``: each of ``components`` that reads a renewed name restarted and
    gated, in RESTARTED_BY's order: etcd (every member healthy under one leader), the controller
    manager and the scheduler (their /healthz). The kube-apiserver's is ``apiserver_lane``'s own.
    ``why``: the end of the restart steps' titles."""
    from kubeforge.plan.etcd.install import health_gate

    host = cluster.host(host_name)
    steps: list = []
    for component, names in RESTARTED_BY:
        if component not in components or not set(names) & set(kubeadm_names):
            continue
        if component == "etcd":
            # "gone" asked with a short timeout: a member shutting down may hold a request until it ends
            answers = Command(script=etcdctl_line(cluster, [client_url(cluster, host)], "endpoint", "health",
                                                  command_timeout="2s"), sudo=True, timeout=10)
            steps.append(RunStep(host_name, restart_static_pod("etcd", answers), "Restart etcd on its renewed certificates",
                                 key="restart-etcd-pod"))
            members = cluster.etcd_members
            steps.append(health_gate(cluster, host, members, key=f"gate-etcd-{host_name}",
                                     title=f"Wait for etcd healthy on {len(members)} members after {host_name}'s member restarted"))
        else:
            check = component_healthy(component)
            steps.append(RunStep(host_name, restart_static_pod(component, check),
                                 f"Restart {component} {why}", key=f"restart-{component}"))
            steps.append(GateStep(host_name, check, f"Wait for {component} healthy",
                                  what=f"{component} of {host_name} healthy at 127.0.0.1:{HEALTH_PORTS[component]}",
                                  timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-{component}-{host_name}"))
    return steps


def kubeadm_renew(names: Sequence[str]) -> Command:
    """``kubeadm certs renew`` for each name. kubeadm exits 0 when it could not renew (an external CA:
    "Detected external ca ... can't be renewed"; a file not there: "MISSING!"), so its answer is read."""
    lines = ["set -e"]
    for n in names:
        lines += [f"out=$(kubeadm certs renew {shlex.quote(n)})", 'echo "$out"',
                  'case "$out" in *"Detected external"*|*"MISSING!"*) '
                  f'echo "kubeadm did not renew {n}: $out" >&2; exit 1;; esac']
    return Command(script="\n".join(lines), sudo=True, timeout=120, description="kubeadm certs renew " + " ".join(names))


def apiserver_lane(cluster: Cluster, host_name: str, files: Sequence[RenderedFile], gate_timeout_s: float,
                   kubeadm_names: Sequence[str] = (), *,
                   restart_title: str = "Restart kube-apiserver on its renewed certificates") -> list:
    """Put the API server's etcd client pair (unchanged files skipped by sha256), run
    ``kubeadm certs renew`` for kubeadm's expiring certificates, restart a stacked etcd member whose
    certificates were renewed (quorum gate), restart the kube-apiserver static pod when one of its
    certificates changed, wait until this node's API is ready again, then restart the controller
    manager and the scheduler on renewed kubeconfigs (each gated on its /healthz)."""
    host = cluster.host(host_name)
    steps: list = put_pairs_together(host_name, files)
    if files:
        steps.append(record_applied_entries(host_name, files))
    if kubeadm_names:
        steps.append(RunStep(host_name, kubeadm_renew(kubeadm_names), "kubeadm certs renew " + ", ".join(kubeadm_names),
                             key="kubeadm-renew"))
    steps += static_pod_restarts(cluster, host_name, kubeadm_names, ("etcd",))
    gate = GateStep(host_name, api_ready(host), "Wait for the API ready",
                    what=f"the API server of {host_name} ready at {api_url(host)} after its restart",
                    timeout_s=gate_timeout_s, interval_s=1.0, key=f"gate-api-{host_name}")
    if files or set(kubeadm_names) & set(dict(RESTARTED_BY)["kube-apiserver"]):
        restart = RunStep(host_name, restart_apiserver(host), restart_title, key="restart-apiserver")
        steps += behind_balancers(cluster, host, [restart, gate], gate_timeout_s)
    else:
        steps.append(gate)
    return steps + static_pod_restarts(cluster, host_name, kubeadm_names, ("kube-controller-manager", "kube-scheduler"))


def renews_admin_conf(plan: Plan) -> bool:
    """The plan runs ``kubeadm certs renew admin.conf`` somewhere: the local copy is stale after it."""
    return any(isinstance(s, RunStep) and s.key == "kubeadm-renew" and "admin.conf" in s.command.description.split()
               for p in plan.phases for lane in p.lanes for s in lane.steps)


@dataclass(frozen=True)
class RenewContext:
    cluster: Cluster
    selection: RenewSelection
    pki_files: Mapping[str, Sequence[RenderedFile]]  # per selected member: its etcd PKI files from the store
    config_files: Mapping[str, Sequence[RenderedFile]]  # per selected member: etcd.env + unit as in place
    apiserver_files: Mapping[str, Sequence[RenderedFile]]  # per control plane: the API server's etcd client pair
    drained_backends: Mapping[str, Sequence[str]]  # per haproxy balancer: what an interrupted run left drained


class NotRenewed(WarnOperator):
    """What expires but this plan does not renew (CAs, the kubelet's, hosts not selected)."""

    name = "NotRenewed"
    title = "Warning: certificates that expire but are not renewed by this run"
    log = log

    def message(self, ctx: RenewContext) -> str:
        return "expiring but not renewed by this run: " + "; ".join(ctx.selection.not_renewed)


class RenewEtcdMembers:
    name = "RenewEtcdMembers"
    title = "Renew etcd member certificates (one member at a time)"
    strategy = rolling()

    def plan(self, ctx: RenewContext) -> PhasePlan:
        lanes = [(m, member_lane(ctx.cluster, m, ctx.pki_files[m], ctx.config_files[m])) for m in ctx.selection.members]
        return PhasePlan.of(self, lanes, reason_if_empty="no etcd member certificate to renew")


class RenewControlPlanes:
    name = "RenewControlPlanes"
    title = "Renew control-plane certificates (one control plane at a time)"
    strategy = rolling()

    def plan(self, ctx: RenewContext) -> PhasePlan:
        kubeadm = dict(ctx.selection.kubeadm)
        lanes = [(cp, apiserver_lane(ctx.cluster, cp, ctx.apiserver_files.get(cp, ()), GATE_TIMEOUT_S, kubeadm.get(cp, ())))
                 for cp in ctx.selection.control_planes]
        return PhasePlan.of(self, lanes, reason_if_empty="no control-plane certificate to renew")


# In order; the first two appear only when they have something to do or say.
PHASES = (ReadyDrainedApiServers, NotRenewed, RenewEtcdMembers, RenewControlPlanes)


def renew_plan(cluster: Cluster, selection: RenewSelection, pki_files: Mapping[str, Sequence[RenderedFile]],
               config_files: Mapping[str, Sequence[RenderedFile]],
               apiserver_files: Mapping[str, Sequence[RenderedFile]] | None = None,
               drained: Mapping[str, Sequence[str]] | None = None) -> Plan:
    """``pki_files`` / ``config_files``: per selected member, its etcd PKI files from the (already
    renewed) store and its etcd.env + unit as in place (for the applied-config stamp).
    ``apiserver_files``: per selected control plane, the API server's etcd client cert and key.
    ``drained``: per haproxy balancer, the API servers an interrupted run left drained there."""
    ctx = RenewContext(cluster, selection, pki_files, config_files, apiserver_files or {}, drained or {})
    phases = ready_drained_phases(cluster, ctx.drained_backends)
    if selection.not_renewed:
        phases.append(NotRenewed().plan(ctx))
    phases += [RenewEtcdMembers().plan(ctx), RenewControlPlanes().plan(ctx)]
    return Plan(WORKFLOW, tuple(phases))
