"""PrepareHosts: swap off now and kept off, kernel modules loaded and persisted, sysctls applied and
persisted — on every Kubernetes node, before anything needs them."""

from __future__ import annotations

from kubeforge.facts.script import WANTED_MODULES
from kubeforge.facts.types import ModuleState
from kubeforge.model import Host
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts
from kubeforge.render.host_prep import MODULES_PATH, SYSCTL_PATH
from kubeforge.transport.base import Command

# Comment out every active swap line of fstab and mask every swap unit, so a reboot keeps swap off.
SWAP_OFF = r"""swapoff -a
sed -i -E 's@^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$@# kubeforge: swap off for the kubelet: \1@' /etc/fstab
for u in $(systemctl list-units --type=swap --all --plain --no-legend 2>/dev/null | awk '{print $1}'); do systemctl mask "$u"; done
"""
SWAP_IS_OFF = r"""[ "$(tail -n +2 /proc/swaps | wc -l)" -eq 0 ] && ! awk '$1 !~ /^#/ && $3 == "swap"' /etc/fstab | grep -q ."""

# Load what is not loaded yet (a module that is built in or shows its sysctls needs no modprobe: that
# is also how containers without module loading look), then apply kubeforge's sysctl file.
LOAD_AND_APPLY = """for m in {modules}; do
  if [ -d /sys/module/$m ] || {{ [ $m = overlay ] && grep -qw overlay /proc/filesystems; }} || {{ [ $m = br_netfilter ] && [ -d /proc/sys/net/bridge ]; }}; then continue; fi
  modprobe $m
done
sysctl -q -p {sysctl}
"""


def wanted_sysctls(content: bytes) -> dict[str, str]:
    """``key = value`` lines of the rendered sysctl file."""
    out = {}
    for line in content.decode().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _sysctls_ok(f, wanted: dict[str, str]) -> bool:
    return all(f.sysctls.values.get(k) == v for k, v in wanted.items())


class PrepareHosts:
    name = "PrepareHosts"
    title = "Prepare hosts (swap, kernel modules, sysctls)"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        lanes = []
        for host in ctx.cluster.nodes:
            lanes.append((host.name, self._host(ctx, host)))
        return PhasePlan.of(self, lanes, strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="swap is off, modules are loaded and sysctls set on every node")

    def _host(self, ctx: UpContext, host: Host) -> list:
        f = ctx.facts.get(host.name)
        steps: list = []
        if f is None or f.swap.enabled is not False or not ctx.prepared(host):
            steps.append(
                RunStep(host.name, Command(script=SWAP_OFF, sudo=True), "Turn swap off and keep it off",
                        unless=Command(script=SWAP_IS_OFF, sudo=True), key="swap-off")
            )
        files = ctx.pending(host, ctx.files_where(host, (MODULES_PATH, SYSCTL_PATH)))
        steps += puts(host, files)
        modules_ok = f is not None and all(f.modules.state(m) is ModuleState.LOADED for m in WANTED_MODULES)
        sysctl = ctx.file(host, SYSCTL_PATH)
        wanted = wanted_sysctls(sysctl.content) if sysctl is not None else {}
        if files or not modules_ok or f is None or not _sysctls_ok(f, wanted):
            script = LOAD_AND_APPLY.format(modules=" ".join(WANTED_MODULES), sysctl=SYSCTL_PATH)
            steps.append(RunStep(host.name, Command(script=script, sudo=True), "Load kernel modules and apply sysctls", key="modules-sysctls"))
        return steps
