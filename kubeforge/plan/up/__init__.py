"""The `up` planner: one phase per module, in the order that is the product (ARCHITECTURE §5)."""

from __future__ import annotations

from kubeforge.plan.endpoint.drain import ReadyDrainedApiServers
from kubeforge.plan.phase import Plan, build_plan
from kubeforge.plan.up.apply_cni import ApplyCni
from kubeforge.plan.up.configure_endpoint import ConfigureEndpoint
from kubeforge.plan.up.context import (  # noqa: F401
    ClusterState,
    CniSource,
    UpContext,
)
from kubeforge.plan.up.fetch_admin_kubeconfig import FetchAdminKubeconfig
from kubeforge.plan.up.init_first_control_plane import InitFirstControlPlane
from kubeforge.plan.up.install_etcd import InstallEtcd
from kubeforge.plan.up.install_etcd_tools import InstallEtcdTools
from kubeforge.plan.up.install_packages import InstallPackages
from kubeforge.plan.up.join_control_planes import JoinControlPlanes
from kubeforge.plan.up.join_workers import JoinWorkers
from kubeforge.plan.up.label_and_taint_nodes import LabelAndTaintNodes
from kubeforge.plan.up.prepare_hosts import PrepareHosts
from kubeforge.plan.up.prepare_images import PrepareImages
from kubeforge.plan.up.record_applied import RecordApplied
from kubeforge.plan.up.reissue_apiserver_certs import ReissueApiserverCerts
from kubeforge.plan.up.restart_runtimes import RestartControlPlaneRuntimes, RestartWorkerRuntimes
from kubeforge.plan.up.wait_endpoint import WaitEndpoint
from kubeforge.plan.up.wait_nodes_ready import WaitNodesReady
from kubeforge.plan.up.write_pki import WritePki

WORKFLOW = "up"

PHASES = (
    PrepareHosts(),
    InstallPackages(),
    PrepareImages(),
    WritePki(),
    InstallEtcd(),
    ReadyDrainedApiServers(),
    ReissueApiserverCerts(),
    ConfigureEndpoint(),
    InitFirstControlPlane(),
    WaitEndpoint(),
    JoinControlPlanes(),
    JoinWorkers(),
    ApplyCni(),
    WaitNodesReady(),
    RestartControlPlaneRuntimes(),
    RestartWorkerRuntimes(),
    LabelAndTaintNodes(),
    FetchAdminKubeconfig(),
    RecordApplied(),
)


# Placed by kubeforge.workflows.up after InstallPackages where it applies (stacked etcd, release archives).
INSERTED = (InstallEtcdTools,)


def plan_up(ctx: UpContext) -> Plan:
    """The whole `up` plan from the resolved context. Pure: no I/O."""
    return build_plan(WORKFLOW, PHASES, ctx)
