"""InstallEtcd: the external etcd cluster — environment file and unit on every member, all members
started at once (a new member waits for its peers), then a health gate per member.

Stacked etcd is kubeadm's static pod: nothing to do here. Growing an existing etcd cluster by a new
member (``member add``) is the etcd workflow's job, not `up`'s: such a member is refused here.
"""

from __future__ import annotations

from kubeforge.errors import SafetyRefusal
from kubeforge.model import EtcdTopology, Host
from kubeforge.model.kubeadm_paths import ETCD_PKI
from kubeforge.model.versions import kubeadm_etcd
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts, restart_when_changed
from kubeforge.render.etcd import ENV_PATH, UNIT_PATH
from kubeforge.transport.base import Command

PKI = ETCD_PKI


def health_probe(ctx: UpContext) -> Command:
    port = ctx.cluster.etcd.client_port
    return Command(
        script=(
            f"ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:{port} --cacert={PKI}/ca.crt "
            f"--cert={PKI}/healthcheck-client.crt --key={PKI}/healthcheck-client.key "
            "--command-timeout=3s endpoint health >/dev/null"
        ),
        sudo=True,
        timeout=20,
    )


class InstallEtcd:
    name = "InstallEtcd"
    title = "Start the external etcd cluster"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        c = ctx.cluster
        if c.etcd.topology is not EtcdTopology.EXTERNAL:
            return PhasePlan.noop(self, f"etcd is stacked: kubeadm {c.kubernetes_version.minor_str} runs etcd "
                                        f"{kubeadm_etcd(c.kubernetes_version)} as a static pod on the control planes")
        members = c.etcd_members
        running = [m for m in members if self._running(ctx, m)]
        new = [m for m in members if m not in running]
        if running and new:
            names = ", ".join(m.name for m in new)
            raise SafetyRefusal(
                f"etcd members {names} are not running while the others are: `up` only creates a new etcd cluster",
                hint="add members with the etcd workflow, or bring the stopped members back",
            )
        lanes = [(m.name, self._host(ctx, m)) for m in members]
        # All members at once: a new member's start blocks until a quorum of its peers is up.
        return PhasePlan.of(self, lanes, strategy=parallel(), reason_if_empty="every etcd member runs with its configuration")

    @staticmethod
    def _running(ctx: UpContext, host: Host) -> bool:
        f = ctx.facts.get(host.name)
        return bool(f and f.units.is_active("etcd") and f.membership.etcd_data)

    def _host(self, ctx: UpContext, host: Host) -> list:
        files = ctx.pending(host, ctx.files_where(host, (ENV_PATH, UNIT_PATH)))
        steps: list = puts(host, files)
        # A re-issued leaf (a member's new address in its SANs) changes what the member runs with:
        # planned here, so `up` hands the member to the etcd workflow's rolling, gated restart.
        reissued = ctx.pending(host, ctx.files_where(host, prefix=PKI + "/"))
        if files or reissued or not self._running(ctx, host) or not ctx.prepared(host):
            steps.append(restart_when_changed(host, "etcd", [ENV_PATH, UNIT_PATH], "Start etcd", block=False))
            steps.append(GateStep(host.name, health_probe(ctx), "Wait for etcd healthy",
                                  what=f"etcd healthy on {host.name}", timeout_s=ctx.gate_timeout_s, interval_s=0.5))
        return steps
