"""RestartControlPlaneRuntimes, RestartWorkerRuntimes: a changed container runtime configuration
on a node that is already part of the running cluster is applied one node at a time for control
planes and in batches of the upgrade policy's maxUnavailable for workers, each node drained first,
its runtime restarted, gated on Ready again, then uncordoned. Never all nodes at once: a runtime
restart takes the node's containers' management away for a moment, and a config that breaks
containerd must stop the run at the first node, not take every node down together.

Nodes not yet in the cluster get their runtime configured and started by InstallPackages, before
kubeadm; nothing runs on them yet."""

from __future__ import annotations

from kubeforge.model import Host
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import slug
from kubeforge.plan.strategy import batched, serial
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts, restart_when_changed
from kubeforge.plan.upgrade.commands import drain, left_cordoned, node_ready_at, uncordon
from kubeforge.render.host_prep import CONTAINERD_PATH, CRICTL_PATH

RUNTIME_FILES = (CONTAINERD_PATH, CRICTL_PATH)


def runtime_restart_is_rolling(ctx: UpContext, host: Host) -> bool:
    """The host runs workloads of this cluster: a runtime restart on it goes through these phases."""
    return (host.is_control_plane or host.is_worker) and ctx.state.initialized and ctx.joined(host)


def runtime_changes(ctx: UpContext, host: Host) -> tuple[list, bool]:
    """The runtime files to write and whether containerd needs a (re)start on ``host``. A file edited
    on the host since kubeforge wrote it counts (config management setting another cgroup driver, say):
    the kubelet depends on what containerd runs with, so `up` puts the rendered one back."""
    files = ctx.pending(host, ctx.files_where(host, RUNTIME_FILES), or_edited=True)
    f = ctx.facts.get(host.name)
    start = bool(files) or f is None or not f.units.is_active("containerd") or not ctx.prepared(host)
    return files, start


def left_drained(ctx: UpContext, host: Host) -> bool:
    """The resumed run drained ``host`` for its runtime restart and never uncordoned it (containerd
    may already run the new configuration): its gate and uncordon are still to run."""
    key = slug(host.name)
    return left_cordoned(ctx.state.nodes.get(host.name), ctx.journaled, f"runtime-drain-{key}", f"runtime-uncordon-{key}")


def _lane(ctx: UpContext, host: Host) -> list:
    files, start = runtime_changes(ctx, host)
    if not start and not left_drained(ctx, host):
        return []
    via, policy = ctx.first.name, ctx.cluster.upgrade
    key = slug(host.name)
    back = [
        node_ready_at(via, host.name, ctx.cluster.kubernetes_version, policy.node_ready_timeout_s,
                      key=f"runtime-ready-{key}"),
        uncordon(via, host.name, key=f"runtime-uncordon-{key}"),
    ]
    if not start:  # the same ids as below: the journal skips the gate when it had passed
        return back
    restart = restart_when_changed(host, "containerd", [CONTAINERD_PATH], "Restart containerd with its configuration",
                                   reads_at_start=True)
    return [drain(via, host.name, policy, key=f"runtime-drain-{key}"), *puts(host, files), restart, *back]


class RestartControlPlaneRuntimes:
    name = "RestartControlPlaneRuntimes"
    title = "Apply runtime changes on control planes (one at a time, drained)"
    # one at a time, the first failure stops; each lane is gated on Ready before its uncordon (a
    # node that does not come back stays cordoned), as UpgradeControlPlanes does
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        lanes = [(h.name, _lane(ctx, h)) for h in ctx.cluster.control_planes if runtime_restart_is_rolling(ctx, h)]
        return PhasePlan.of(self, lanes, reason_if_empty="no control plane in the cluster has a runtime change")


class RestartWorkerRuntimes:
    name = "RestartWorkerRuntimes"
    title = "Apply runtime changes on workers (batches of maxUnavailable, drained)"
    strategy = batched(1)

    def title_for(self, size: int) -> str:
        return f"Apply runtime changes on workers (batches of {size}, drained)"

    def plan(self, ctx: UpContext) -> PhasePlan:
        workers = ctx.cluster.workers
        lanes = [(h.name, _lane(ctx, h)) for h in workers if runtime_restart_is_rolling(ctx, h)]
        size = max(1, ctx.cluster.upgrade.batch_size(len(workers)))
        return PhasePlan.of(self, lanes, strategy=batched(size),
                            title=self.title_for(size),
                            reason_if_empty="no worker in the cluster has a runtime change")
