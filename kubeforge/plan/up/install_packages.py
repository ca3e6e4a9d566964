"""InstallPackages: the package sources for the exact minor, then kubeadm, kubelet and kubectl at the
exact version and held, containerd on nodes, etcd's Debian packages at the inventory's version on
dedicated members (when etcd comes from the mirror; release archives are installed by the etcd
phases), haproxy + keepalived on load balancers; containerd configured and (re)started when its
configuration changed on nodes not yet in the cluster (a joined node's runtime changes roll,
drained: restart_runtimes).

With ``packages.source: offline`` the bundle is verified on the operator's machine while planning
(kubeforge.plan.bundle: exit 3 for a file that does not match its index, exit 7 for a package or
version it lacks) and, on each host that has something to install, pushed to
/var/cache/kubeforge/bundle/ (only files whose sha256 differs travel) before apt reads it; apt then
reads the bundle's list and nothing else."""

from __future__ import annotations

from kubeforge.facts.etcd import PACKAGE as ETCD_SERVER_PACKAGE
from kubeforge.model import Cluster, EndpointMode, EtcdTopology, Host
from kubeforge.plan.apt import install_pinned
from kubeforge.plan.bundle import Bundle, load_bundle, push_bundle, require_packages
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.restart_runtimes import runtime_changes, runtime_restart_is_rolling
from kubeforge.plan.up.scripts import puts, q, restart_when_changed
from kubeforge.render.etcd import etcd_from_archive
from kubeforge.render.host_prep import CONTAINERD_PATH
from kubeforge.transport.base import Command

KUBE_PACKAGES = ("kubeadm", "kubelet", "kubectl")
SOURCE_PREFIX = "/etc/apt/"


def wanted_packages(ctx: UpContext, host: Host) -> dict[str, str | None]:
    """Package -> exact upstream version (None: whatever the source has) for ``host``."""
    return host_packages(ctx.cluster, host)


def host_packages(c: Cluster, host: Host) -> dict[str, str | None]:
    """wanted_packages from the inventory alone (`bundle create` asks it per role)."""
    out: dict[str, str | None] = {}
    if host.is_control_plane or host.is_worker:
        for p in KUBE_PACKAGES:
            out[p] = str(c.kubernetes_version)
        out[c.packages.containerd_package] = None
    # etcd from release archives is the etcd install phases' job (kubeforge.plan.etcd.commands.install_steps)
    if c.etcd.topology is EtcdTopology.EXTERNAL and host.is_etcd and not etcd_from_archive(c):
        # Pinned like the etcd workflow's own install: a source offering several etcd versions
        # must never hand `up` a different one than the inventory names.
        for p in c.packages.etcd_packages:
            out[p] = str(c.etcd.version)
    if c.etcd.topology is EtcdTopology.STACKED and host.is_control_plane and not etcd_from_archive(c):
        # kubeadm runs etcd from its image: `etcd status`, `backup` and `restore` run etcdctl and
        # etcdutl on the control planes. The client package only: the server's would start an etcd.
        out["etcd-client"] = str(c.etcd.version)
    if c.endpoint.mode is EndpointMode.HAPROXY and host.is_load_balancer:
        out["haproxy"] = None
        out["keepalived"] = None
    return out


def install_script(wanted: dict[str, str | None], hold: list[str], *, offline: bool = False) -> str:
    """Service starts forbidden while apt runs (etcd's postinst would start a single-member cluster
    on the data dir, containerd would start without its config): kubeforge starts each one later,
    with its configuration (kubeforge.plan.apt). A first install of etcd's server is left disabled at
    boot, as the etcd workflow's own install leaves it: a machine that loses power before kubeforge
    enables its unit must not boot Debian's single-member etcd (tests/faults, docs/faults.md)."""
    return install_pinned(wanted, hold, offline=offline,
                          not_at_boot={ETCD_SERVER_PACKAGE: "etcd"} if ETCD_SERVER_PACKAGE in wanted else None)


def installed_guard(wanted: dict[str, str | None], hold: list[str]) -> str:
    checks = []
    for p, v in wanted.items():
        # a held package's status reads "hold ok installed"
        pattern = f"^(install|hold) ok installed {v}-" if v else "^(install|hold) ok installed "
        checks.append(f"dpkg-query -W -f='${{Status}} ${{Version}}' {q(p)} 2>/dev/null | grep -Eq {q(pattern)}")
    for p in hold:
        checks.append(f"dpkg --get-selections {q(p)} | grep -qw hold")
    return " && ".join(checks) or "true"


def converged(ctx: UpContext, host: Host, wanted: dict[str, str | None], hold: list[str]) -> bool:
    f = ctx.facts.get(host.name)
    if f is None:
        return False
    for p, v in wanted.items():
        have = f.packages.packages.get(p)
        if have is None or (v is not None and not have.startswith(f"{v}-")):
            return False
    return all(p in f.held.packages for p in hold)


class InstallPackages:
    name = "InstallPackages"
    title = "Install packages (sources, exact versions, holds, container runtime)"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        bundle = load_bundle(ctx.cluster)
        if bundle is not None:
            require_packages(bundle, {h.name: w for h in ctx.cluster.hosts if (w := wanted_packages(ctx, h))})
        lanes = [(h.name, self._host(ctx, h, bundle)) for h in ctx.cluster.hosts]
        return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="every package is installed at its version and held")

    def _host(self, ctx: UpContext, host: Host, bundle: Bundle | None = None) -> list:
        wanted = wanted_packages(ctx, host)
        if not wanted:
            return []
        hold = [p for p in KUBE_PACKAGES if p in wanted]
        sources = ctx.pending(host, ctx.files_where(host, prefix=SOURCE_PREFIX))
        steps: list = []
        if sources or not converged(ctx, host, wanted, hold):
            # A converged host gets no push at all: the bundle is only ever read by this apt step.
            if bundle is not None:
                steps += push_bundle(host.name, bundle)
            steps += puts(host, sources)
            versions = ", ".join(f"{p} {v}" if v else p for p, v in wanted.items())
            steps.append(
                RunStep(host.name, Command(script=install_script(wanted, hold, offline=bundle is not None),
                                           sudo=True, timeout=900),
                        f"Install {versions}" + (" and hold them" if hold else ""),
                        unless=Command(script=installed_guard(wanted, hold), sudo=True), key="install-packages")
            )
        if host.is_control_plane or host.is_worker:
            f = ctx.facts.get(host.name)
            # A node of the running cluster gets runtime changes drained, one at a time or in
            # batches (restart_runtimes); only a node not yet joined is configured here, at once.
            if not runtime_restart_is_rolling(ctx, host):
                runtime, start = runtime_changes(ctx, host)
                steps += puts(host, runtime)
                if start:
                    steps.append(restart_when_changed(host, "containerd", [CONTAINERD_PATH], "Start containerd with its configuration",
                                                      reads_at_start=True))
            unit = f.units.states.get("kubelet") if f is not None else None
            if unit is None or unit.enabled != "enabled":
                steps.append(RunStep(host.name, Command(argv=["systemctl", "enable", "kubelet"], sudo=True), "Enable the kubelet",
                                     unless=Command(argv=["systemctl", "is-enabled", "--quiet", "kubelet"]), key="enable-kubelet"))
        return steps
