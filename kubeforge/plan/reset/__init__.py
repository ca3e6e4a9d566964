"""The `reset` planner: undo `up` on the selected hosts, newest layer first.

Nodes leave Kubernetes (kubeadm reset, Node object deleted), services stop and are disabled, then
kubeforge's files go. etcd data is moved aside unless the operator asked to purge it. Packages stay
installed (and held): a later `up` reuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from shlex import quote as q

from kubeforge.facts.etcd import STAMP_PATH as ETCD_STAMP
from kubeforge.facts.etcdctl import client_url, peer_url
from kubeforge.model import Cluster, EndpointMode, EtcdTopology, Host
from kubeforge.model.kubeadm_paths import ETCD_PKI, KUBECTL, KUBERNETES_DIR
from kubeforge.plan.etcd.membership import remove_by_peer_url
from kubeforge.plan.kubectl import delete_node
from kubeforge.plan.phase import PhasePlan, Plan, build_plan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import parallel, serial
from kubeforge.plan.up.init_first_control_plane import HOST_LOG_DIR, quiet
from kubeforge.render.context import KUBEFORGE_DIR
from kubeforge.render.endpoint import BALANCER_PATHS
from kubeforge.render.etcd import ENV_PATH, UNIT_PATH
from kubeforge.render.host_prep import (
    CONTAINERD_PATH,
    CRICTL_PATH,
    MODULES_PATH,
    SYSCTL_PATH,
)
from kubeforge.render.packages import (
    BUNDLE_LIST,
    DEBIAN_MIRROR_LIST,
    KUBERNETES_LIST,
    PIN_PATH,
)
from kubeforge.transport.base import Command

WORKFLOW = "reset"

KUBEFORGE_PATHS = (
    KUBEFORGE_DIR, KUBERNETES_DIR, HOST_LOG_DIR,
    KUBERNETES_LIST, DEBIAN_MIRROR_LIST, BUNDLE_LIST, PIN_PATH,
    MODULES_PATH, SYSCTL_PATH, CONTAINERD_PATH, CRICTL_PATH,
    ENV_PATH, UNIT_PATH, ETCD_PKI, ETCD_STAMP,
    *BALANCER_PATHS,
    "/var/cache/kubeforge",  # the offline bundle and etcd release archives kubeforge pushed
)


@dataclass(frozen=True)
class ResetContext:
    cluster: Cluster
    hosts: tuple[Host, ...]  # the selection, inventory order
    purge: bool
    stamp: str  # UTC time for the moved-aside etcd data dir: 20261122T081500Z
    cluster_reachable: bool  # the first control plane's API answered (to delete Node objects)

    @property
    def whole_cluster(self) -> bool:
        return {h.name for h in self.hosts} >= {h.name for h in self.cluster.hosts}


def _lanes(hosts, make):
    return [(h.name, make(h)) for h in hosts]


class ResetNodes:
    name = "ResetNodes"
    title = "Reset Kubernetes nodes (kubeadm reset, kubelet and containerd stopped)"
    strategy = parallel()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        nodes = [h for h in ctx.hosts if h.is_control_plane or h.is_worker]
        script = (
            "if command -v kubeadm >/dev/null 2>&1; then\n"
            f"  {quiet('kubeadm reset -f', 'kubeadm-reset').strip()}\n"
            "fi\n"
            "systemctl disable --now kubelet containerd 2>/dev/null || true\n"
        )
        return PhasePlan.of(
            self, _lanes(nodes, lambda h: [RunStep(h.name, Command(script=script, sudo=True, timeout=300), "kubeadm reset",
                                                   key="kubeadm-reset")]),
            strategy=parallel(ctx.cluster.parallelism), reason_if_empty="no Kubernetes node selected",
        )


def node_absent(name: str) -> Command:
    """Succeeds only when the API server says the Node does not exist (kubectl's "(NotFound)"): a
    kubectl that cannot reach the API, or any other error, fails the check, so the delete still runs
    (and reports its own error) rather than leaving a stale Node behind."""
    script = (f"out=$({KUBECTL} get node {q(name)} -o name 2>&1) && exit 1\n"
              "case \"$out\" in *'(NotFound)'*) exit 0 ;; esac\n"
              "exit 1\n")
    return Command(script=script, sudo=True)


class RemoveNodeObjects:
    name = "RemoveNodeObjects"
    title = "Delete the Node objects"
    strategy = serial()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        nodes = [h for h in ctx.hosts if h.is_control_plane or h.is_worker]
        if ctx.whole_cluster:
            return PhasePlan.noop(self, "the whole cluster is reset")
        if not ctx.cluster_reachable:
            return PhasePlan.noop(self, "the API server did not answer; delete the Node objects later with kubectl")
        first = ctx.cluster.first_control_plane
        steps = [
            RunStep(first.name, delete_node(h.name),
                    f"Delete node {h.name}", unless=node_absent(h.name), key=f"delete-{h.name}")
            for h in nodes
        ]
        return PhasePlan.of(self, [(first.name, steps)], reason_if_empty="no Kubernetes node selected")


class RemoveEtcdMembers:
    """kubeadm reset removes its own stacked etcd member only on a best-effort basis: when etcd refuses
    (its strict reconfiguration check right after a join, or the member was already down) it warns
    "please manually remove this etcd member using etcdctl" and goes on. The first control plane removes
    whatever is still listed under a reset control plane's name, so no member is left behind to
    weigh on the quorum."""

    name = "RemoveEtcdMembers"
    title = "Remove the reset control planes' etcd members"
    strategy = serial()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        c = ctx.cluster
        if c.etcd.topology is not EtcdTopology.STACKED:
            return PhasePlan.noop(self, "external etcd: its members are managed with the etcd workflow")
        if ctx.whole_cluster:
            return PhasePlan.noop(self, "the whole cluster is reset")
        leaving = {h.name for h in ctx.hosts}
        endpoints = [client_url(c, h) for h in c.etcd_members if h.name not in leaving]
        first = c.first_control_plane
        steps = []
        for h in (h for h in ctx.hosts if h.is_control_plane):
            # by peer URL: a member a stopped join added but never started is listed without a name
            script = remove_by_peer_url(c, endpoints, peer_url(c, h))
            steps.append(RunStep(first.name, Command(script=script, sudo=True, timeout=180, description=f"member remove {h.name}"),
                                 f"Remove etcd member {h.name} if still listed", key=f"etcd-member-{h.name}"))
        return PhasePlan.of(self, [(first.name, steps)], reason_if_empty="no control plane selected")


class StopEtcd:
    name = "StopEtcd"
    title = "Stop etcd"
    strategy = parallel()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        c = ctx.cluster
        if c.etcd.topology is not EtcdTopology.EXTERNAL:
            return PhasePlan.noop(self, "stacked etcd: kubeadm reset removed it with the control planes")
        data = q(c.etcd.data_dir)
        if ctx.purge:
            keep = f"rm -rf -- {data}\n"
            what = f"Stop etcd and delete {c.etcd.data_dir}"
        else:
            aside = q(f"{c.etcd.data_dir}.kubeforge-reset-{ctx.stamp}")
            keep = f"if [ -d {data} ] && [ -n \"$(ls -A {data})\" ]; then mv -- {data} {aside}; fi\n"
            what = f"Stop etcd and move {c.etcd.data_dir} aside"
        # An empty data dir owned by etcd, as the package left it, so a later `up` can start a member.
        script = ("systemctl disable --now etcd 2>/dev/null || true\n" + keep +
                  f"if id etcd >/dev/null 2>&1; then install -d -o etcd -g etcd -m 0700 {data}; fi\n")
        members = [h for h in ctx.hosts if h.is_etcd]
        return PhasePlan.of(self, _lanes(members, lambda h: [RunStep(h.name, Command(script=script, sudo=True), what, key="stop-etcd")]),
                            strategy=parallel(ctx.cluster.parallelism), reason_if_empty="no etcd member selected")


class StopEndpoint:
    name = "StopEndpoint"
    title = "Stop the load balancers"
    strategy = parallel()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        if ctx.cluster.endpoint.mode is not EndpointMode.HAPROXY:
            return PhasePlan.noop(self, f"endpoint mode {ctx.cluster.endpoint.mode}: no balancer of kubeforge's")
        script = "systemctl disable --now haproxy keepalived 2>/dev/null || true\n"
        lbs = [h for h in ctx.hosts if h.is_load_balancer]
        return PhasePlan.of(self, _lanes(lbs, lambda h: [RunStep(h.name, Command(script=script, sudo=True), "Stop haproxy and keepalived",
                                                                 key="stop-lb")]),
                            reason_if_empty="no load balancer selected")


class RemoveKubeforgeFiles:
    name = "RemoveKubeforgeFiles"
    title = "Remove what kubeforge wrote"
    strategy = parallel()

    def plan(self, ctx: ResetContext) -> PhasePlan:
        script = "rm -rf -- " + " ".join(q(p) for p in KUBEFORGE_PATHS) + "\nsystemctl daemon-reload\n"
        return PhasePlan.of(self, _lanes(ctx.hosts, lambda h: [RunStep(h.name, Command(script=script, sudo=True), "Remove kubeforge's files",
                                                                       key="remove-files")]),
                            strategy=parallel(ctx.cluster.parallelism), reason_if_empty="no host selected")


# Newest layer first: nodes leave Kubernetes, then etcd, the balancers, and kubeforge's files.
PHASES = (ResetNodes(), RemoveNodeObjects(), RemoveEtcdMembers(), StopEtcd(), StopEndpoint(), RemoveKubeforgeFiles())


def plan_reset(ctx: ResetContext) -> Plan:
    return build_plan(WORKFLOW, PHASES, ctx)


def selected(cluster: Cluster, names: Sequence[str] | None) -> tuple[Host, ...]:
    return cluster.hosts if names is None else cluster.select(names)
