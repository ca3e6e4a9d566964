"""FetchAdminKubeconfig: the first control plane's admin.conf to ``<state_dir>/admin.conf`` (0600,
checksummed in transit), unless the local copy already has the same sha256."""

from __future__ import annotations

from kubeforge.model.kubeadm_paths import ADMIN_CONF
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GetFileStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext

LOCAL_NAME = "admin.conf"


class FetchAdminKubeconfig:
    name = "FetchAdminKubeconfig"
    title = "Fetch the admin kubeconfig"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        local = ctx.cluster.state_dir / LOCAL_NAME
        if ctx.state.admin_conf_sha256 and ctx.local_admin_sha256 == ctx.state.admin_conf_sha256:
            return PhasePlan.noop(self, f"{local} matches {ctx.first.name}:{ADMIN_CONF}")
        step = GetFileStep(ctx.first.name, ADMIN_CONF, str(local), title="Fetch the admin kubeconfig", key="fetch-admin-conf")
        return PhasePlan.of(self, [(ctx.first.name, [step])])
