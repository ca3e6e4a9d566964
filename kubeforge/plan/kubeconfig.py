"""``kubeforge kubeconfig``'s plans: fetch the admin kubeconfig from the first control plane, or have
kubeadm there write one for a named user with an expiry and fetch that.

    plan_admin(cluster, local)                          -> Plan "kubeconfig"
    plan_user(cluster, local, user, seconds, orgs, workdir) -> Plan "kubeconfig user"

For a user, kubeadm (``kubeconfig user --client-name --validity-period``) signs a client certificate
with the cluster CA on the control plane. Its output holds the private key, so it never travels on
stdout (which is logged): kubeadm writes it into a 0700 directory under /run, the file is fetched
(checksummed, 0600 here), then the directory is removed. The config kubeadm reads is written there
too, with the version of kubeadm on the host, so it never depends on the init config of long ago.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from shlex import quote as q

from kubeforge.model import Cluster
from kubeforge.model.kubeadm_paths import ADMIN_CONF
from kubeforge.model.versions import kubeadm_api_version
from kubeforge.plan.phase import PhasePlan, Plan, build_plan
from kubeforge.plan.steps import GetFileStep, RunStep, Step
from kubeforge.plan.strategy import serial
from kubeforge.transport.base import Command

# A user or organisation name as it goes into a certificate subject: no spaces, quotes or slashes.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+=-]{0,127}$")


@dataclass(frozen=True)
class KubeconfigInput:
    cluster: Cluster
    local: str  # where the kubeconfig goes on this machine
    user: str = ""  # a named user's (WriteUserKubeconfig); "" for the admin's
    seconds: int = 0
    orgs: tuple[str, ...] = ()
    workdir: str = ""


class FetchAdminKubeconfig:
    name = "FetchAdminKubeconfig"
    title = "Fetch the admin kubeconfig"
    strategy = serial()

    def plan(self, inp: KubeconfigInput) -> PhasePlan:
        first = inp.cluster.first_control_plane.name
        check = RunStep(first, Command(script=f"test -f {ADMIN_CONF} || {{ echo 'no {ADMIN_CONF} on this host: "
                                              "is the cluster up? (kubeforge up)' >&2; exit 1; }", sudo=True,
                                       description="the admin kubeconfig exists"),
                        "Check the admin kubeconfig exists", key="admin-conf-exists")
        get = GetFileStep(first, ADMIN_CONF, inp.local, title=self.title, key="fetch-admin-conf")
        return PhasePlan.of(self, [(first, [check, get])])


def plan_admin(cluster: Cluster, local: str) -> Plan:
    return build_plan("kubeconfig", (FetchAdminKubeconfig(),), KubeconfigInput(cluster, local))


def _user_config(cluster: Cluster) -> str:
    """The ClusterConfiguration kubeadm reads (kubernetesVersion filled in on the host)."""
    return "\n".join([
        f"apiVersion: {kubeadm_api_version(cluster.kubernetes_version)}",
        "kind: ClusterConfiguration",
        "kubernetesVersion: $(kubeadm version -o short)",
        f"clusterName: {cluster.name}",
        f"controlPlaneEndpoint: {cluster.endpoint.host_port}",
    ])


class WriteUserKubeconfig:
    name = "WriteUserKubeconfig"
    title = "Write a kubeconfig for a user"
    strategy = serial()

    def title_for(self, inp: KubeconfigInput) -> str:
        return f"Write a kubeconfig for {inp.user}"

    def plan(self, inp: KubeconfigInput) -> PhasePlan:
        first = inp.cluster.first_control_plane.name
        user, workdir = inp.user, inp.workdir
        remote = f"{workdir}/{user}.conf"
        org_flags = "".join(f" --org {q(o)}" for o in inp.orgs)
        write = "\n".join([
            f"rm -rf {q(workdir)}",
            f"mkdir -m 700 {q(workdir)}",
            "umask 077",
            f"cat > {q(workdir + '/config.yaml')} <<EOF",
            _user_config(inp.cluster),
            "EOF",
            f"kubeadm kubeconfig user --config {q(workdir + '/config.yaml')} --client-name {q(user)}"
            f" --validity-period {inp.seconds}s{org_flags} > {q(remote)}",
        ])
        steps: list[Step] = [
            RunStep(first, Command(script=write, sudo=True, timeout=120, description=f"kubeadm kubeconfig user {user}"),
                    f"Have kubeadm write a kubeconfig for {user}", key="kubeconfig-user"),
            GetFileStep(first, remote, inp.local, title=f"Fetch the kubeconfig of {user}", key="fetch-user-conf"),
            RunStep(first, Command(argv=["rm", "-rf", workdir], sudo=True, description="remove the kubeconfig there"),
                    f"Remove {user}'s kubeconfig from {first}", key="remove-user-conf"),
        ]
        return PhasePlan.of(self, [(first, steps)], title=self.title_for(inp))


# Each is a plan of its own: the admin's kubeconfig, or a named user's.
PHASES = (FetchAdminKubeconfig(), WriteUserKubeconfig())


def plan_user(cluster: Cluster, local: str, user: str, seconds: int, orgs: tuple[str, ...], workdir: str) -> Plan:
    """``workdir``: a fresh directory name under /run, chosen before planning (randomness resolved
    early: the plan printed is the plan run)."""
    for name in (user, *orgs):
        if not NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a user or organisation name (letters, digits and . _ @ : + = -)")
    return build_plan(f"kubeconfig user {user}", (WriteUserKubeconfig(),),
                      KubeconfigInput(cluster, local, user, seconds, orgs, workdir))
