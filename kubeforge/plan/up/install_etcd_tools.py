"""InstallEtcdTools: etcdctl and etcdutl on the control planes of a stacked-etcd cluster.

kubeadm runs stacked etcd from its image, so a control plane has no etcdctl/etcdutl of its own;
`etcd status`, `backup` and `restore` need them there. From a mirror, InstallPackages installs the
etcd client package (and this phase is not planned); from release archives, this phase unpacks the
verified archive of the inventory's etcd version into /usr/local/bin on each control plane (no unit,
nothing started). Never from the internet: with upstream packages and no etcd.releaseURL the archive
would be GitHub's, so the phase is a no-op saying how to get the tools (planning fetches nothing).
kubeforge.workflows.up places it after InstallPackages.
"""

from __future__ import annotations

from kubeforge.model import Cluster
from kubeforge.model.versions import kubeadm_etcd
from kubeforge.plan.etcd.commands import install_steps
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import parallel


class InstallEtcdTools:
    name = "InstallEtcdTools"
    title = "etcd tools on the control planes (stacked etcd)"
    strategy = parallel()

    def __init__(self, arches: dict[str, str] | None) -> None:
        """``arches``: each control plane's release archive (its archive fetched and verified before
        planning); None: the archive would be upstream's, which kubeforge does not fetch for this."""
        self.arches = arches

    def plan(self, cluster: Cluster) -> PhasePlan:
        if self.arches is None:
            return PhasePlan.noop(self, (
                f"stacked etcd runs from kubeadm's image (etcd {kubeadm_etcd(cluster.kubernetes_version)} for "
                f"Kubernetes {cluster.kubernetes_version.minor_str}); kubeforge fetches no etcd archive from the "
                "internet for it. For etcdctl/etcdutl on the control planes (etcd status, backup, restore), set "
                "spec.etcd.releaseURL to your copy of etcd's releases or use packages.source mirror"))
        arches = self.arches
        lanes = [(h.name, install_steps(cluster, h, title=f"Install etcd {cluster.etcd.version} tools",
                                        key="etcd-tools", arch=arches[h.name])) for h in cluster.control_planes]
        return PhasePlan.of(self, lanes)
