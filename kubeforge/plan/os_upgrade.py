"""`kubeforge os upgrade`: a rolling OS patch run, planned in two stages.

  1. UpgradePackages: `apt-get upgrade` of everything but the Kubernetes and etcd packages (held
     for the command's duration when the host does not hold them already; kubeforge's own upgrade
     commands change those). Control planes and etcd members one at a time, workers in batches of
     ``upgrade.maxUnavailable``. Nothing restarts the host here.
  2. RebootNodes, planned from fresh facts once every package is in: a host reboots only when it
     says it needs to (/var/run/reboot-required, a newer kernel installed than the one running) or
     an earlier run marked it and had not finished with it. Each: the pending reboot recorded on
     the host (its boot id), drained, rebooted, back (a new boot id), its etcd member healthy with
     the cluster's quorum, its node Ready, the API's /readyz through the endpoint, uncordoned, the
     record removed. Control planes and etcd members one at a time; workers in batches.

What each host says (its patch state, OsFacts) is read by kubeforge.facts.os_patch; the planners
here are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from shlex import quote as q

from kubeforge.facts.os_patch import BOOT_ID, KEPT, MARKER, OsFacts
from kubeforge.model import Cluster, EndpointMode, Host
from kubeforge.plan.apt import DEBIAN_FRONTEND
from kubeforge.plan.etcd.install import health_gate
from kubeforge.plan.kubectl import node_ready, readyz_through
from kubeforge.plan.phase import PhasePlan, Plan, build_plan
from kubeforge.plan.steps import GateStep, RunStep, Step
from kubeforge.plan.strategy import batched, serial
from kubeforge.plan.upgrade.commands import drain, uncordon
from kubeforge.transport.base import Command

WORKFLOW = "os upgrade"

@dataclass(frozen=True)
class OsUpgradeInput:
    cluster: Cluster
    facts: Mapping[str, OsFacts]
    hosts: tuple[Host, ...] = field(default=())  # () : every host of the inventory

    @property
    def selected(self) -> tuple[Host, ...]:
        return self.hosts or self.cluster.hosts


def rolling_groups(cluster: Cluster, hosts: Sequence[Host]) -> tuple[list[Host], list[Host]]:
    """(one at a time: etcd members, control planes, balancers; in batches: the other workers)."""
    one_by_one = [h for h in hosts if h.is_etcd or h.is_control_plane or not h.is_worker]
    workers = [h for h in hosts if h not in one_by_one]
    return one_by_one, workers


def upgrade_packages_step(host: Host) -> RunStep:
    keep = " ".join(KEPT)
    script = "\n".join([
        DEBIAN_FRONTEND,
        # hold what kubeforge's own commands upgrade, for this command only: what the host held before stays held
        "before=$(apt-mark showhold)",
        # dpkg-query exits 1 when some of them are not installed (the usual case): not an error here
        f"kept=$({{ dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {keep} 2>/dev/null || true; }} | awk '$2 ~ /^.i/ {{print $1}}')",
        'restore() { for p in $kept; do printf \'%s\\n\' "$before" | grep -qx "$p" || apt-mark unhold "$p" >/dev/null; done; }',
        "trap restore EXIT",
        '[ -z "$kept" ] || apt-mark hold $kept >/dev/null',
        "apt-get update -q -o Acquire::Retries=3 >/dev/null",
        "apt-get upgrade -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef",
    ])
    nothing = "export LC_ALL=C\n" + "! apt-get -s -q upgrade 2>/dev/null | awk '/^Inst /{print $2}' | grep -vxF " + \
              " ".join(f"-e {k}" for k in KEPT) + " >/dev/null"
    return RunStep(host.name, Command(script=script, sudo=True, timeout=1800, description="apt-get upgrade"),
                   "Upgrade the OS packages (Kubernetes and etcd kept)", unless=Command(script=nothing, sudo=True, timeout=120),
                   key="apt-upgrade")


def _lanes(inp: OsUpgradeInput, workers: bool, steps) -> list[tuple[str, list[Step]]]:
    """``steps(host)`` (None: nothing for that host) on the selected etcd members, control planes and
    balancers (``workers`` False) or on the other workers."""
    one_by_one, rest = rolling_groups(inp.cluster, inp.selected)
    return [(h.name, got) for h in (rest if workers else one_by_one) if (got := steps(h))]


def _batch(inp: OsUpgradeInput) -> int:
    return max(1, inp.cluster.upgrade.batch_size(len(rolling_groups(inp.cluster, inp.selected)[1])))


def _packages(inp: OsUpgradeInput):
    return lambda h: [upgrade_packages_step(h)] if inp.facts[h.name].upgrades else None


class UpgradePackagesControlPlanes:
    name = "UpgradePackagesControlPlanes"
    title = "Upgrade OS packages: etcd and control planes, one at a time"
    strategy = serial()

    def plan(self, inp: OsUpgradeInput) -> PhasePlan:
        return PhasePlan.of(self, _lanes(inp, False, _packages(inp)),
                            reason_if_empty="nothing to upgrade on the etcd members, control planes and balancers")


class UpgradePackagesWorkers:
    name = "UpgradePackagesWorkers"
    title = "Upgrade OS packages: workers, maxUnavailable at a time"
    strategy = batched(1)

    def title_for(self, size: int) -> str:
        return f"Upgrade OS packages: workers, {size} at a time"

    def plan(self, inp: OsUpgradeInput) -> PhasePlan:
        size = _batch(inp)
        return PhasePlan.of(self, _lanes(inp, True, _packages(inp)), title=self.title_for(size), strategy=batched(size),
                            reason_if_empty="nothing to upgrade on the workers")


def _booted_again() -> str:
    return f'[ -s {MARKER} ] && [ "$(cat {BOOT_ID})" != "$(cat {MARKER})" ]'


def reboot_steps(cluster: Cluster, host: Host, boot_id: str) -> list[Step]:
    """One host's reboot window: recorded, drained, rebooted, back, gated, uncordoned, record removed."""
    first = cluster.first_control_plane
    node = host.is_control_plane or host.is_worker
    steps: list[Step] = [RunStep(host.name, Command(
        script=f"install -d -m 0755 {q(MARKER.rsplit('/', 1)[0])}\nprintf '%s\\n' {q(boot_id)} > {MARKER}.tmp\n"
               f"mv {MARKER}.tmp {MARKER}\nsync", sudo=True, timeout=60),
        "Record the pending reboot", unless=Command(script=f"[ -s {MARKER} ]", sudo=True, timeout=30), key="mark")]
    if node:
        steps.append(drain(first.name, host.name, cluster.upgrade, key=f"drain-{host.name}"))
    # systemd reboots a moment after the command has answered, so the step ends cleanly
    steps.append(RunStep(host.name, Command(
        script="systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot",
        sudo=True, timeout=60), "Reboot", unless=Command(script=_booted_again(), sudo=True, timeout=30), key="reboot"))
    steps.append(GateStep(host.name, Command(script=_booted_again(), sudo=True, timeout=20), f"Wait for {host.name} to boot again",
                          what=f"{host.name} answering with a new boot id", timeout_s=600, interval_s=2.0, key="back"))
    if host.is_etcd or (host.is_control_plane and cluster.etcd_members and host in cluster.etcd_members):
        steps.append(health_gate(cluster, host, cluster.etcd_members, key=f"etcd-healthy-{host.name}",
                                 title="Wait for etcd healthy, every member, one leader"))
    if node:
        steps.append(GateStep(first.name, Command(script=node_ready(host.name),
                                                  sudo=True, timeout=60),
                              f"Wait for {host.name} Ready", what=f"node {host.name} Ready",
                              timeout_s=cluster.upgrade.node_ready_timeout_s, interval_s=1.0, key=f"ready-{host.name}"))
    if host.is_control_plane and cluster.endpoint.mode is not EndpointMode.NONE:
        url = cluster.endpoint.url
        steps.append(GateStep(first.name, readyz_through(url),
                              "Wait for the API at the endpoint", what=f"/readyz through {cluster.endpoint.host_port}",
                              timeout_s=300, interval_s=1.0, key=f"readyz-{host.name}"))
    if node:
        steps.append(uncordon(first.name, host.name, key=f"uncordon-{host.name}"))
    steps.append(RunStep(host.name, Command(script=f"rm -f {MARKER}", sudo=True, timeout=30), "Remove the reboot record",
                         unless=Command(script=f"[ ! -e {MARKER} ]", sudo=True, timeout=30), key="unmark"))
    return steps


def _reboots(inp: OsUpgradeInput):
    f = inp.facts
    return lambda h: reboot_steps(inp.cluster, h, f[h.name].marked or f[h.name].boot_id) if f[h.name].needs_reboot else None


class RebootControlPlanes:
    name = "RebootControlPlanes"
    title = "Reboot where needed: etcd and control planes, one at a time"
    strategy = serial()

    def plan(self, inp: OsUpgradeInput) -> PhasePlan:
        return PhasePlan.of(self, _lanes(inp, False, _reboots(inp)),
                            reason_if_empty="no etcd member, control plane or balancer needs a reboot")


class RebootWorkers:
    name = "RebootWorkers"
    title = "Reboot where needed: workers, maxUnavailable at a time"
    strategy = batched(1)

    def title_for(self, size: int) -> str:
        return f"Reboot where needed: workers, {size} at a time"

    def plan(self, inp: OsUpgradeInput) -> PhasePlan:
        size = _batch(inp)
        return PhasePlan.of(self, _lanes(inp, True, _reboots(inp)), title=self.title_for(size), strategy=batched(size),
                            reason_if_empty="no worker needs a reboot")


# Two stages, each its own plan: the packages everywhere, then (from fresh facts) the reboots.
PACKAGE_PHASES = (UpgradePackagesControlPlanes(), UpgradePackagesWorkers())
REBOOT_PHASES = (RebootControlPlanes(), RebootWorkers())
PHASES = PACKAGE_PHASES + REBOOT_PHASES


def plan_packages(inp: OsUpgradeInput) -> Plan:
    return build_plan(WORKFLOW, PACKAGE_PHASES, inp)


def plan_reboots(inp: OsUpgradeInput) -> Plan:
    return build_plan(WORKFLOW, REBOOT_PHASES, inp)


def preview(inp: OsUpgradeInput) -> list[dict]:
    """Per host, for --dry-run: what would be upgraded and whether it would reboot."""
    rows = []
    for h in inp.selected:
        f = inp.facts[h.name]
        if f.needs_reboot:
            reboot = f"yes: {f.reboot_reason}"
        elif f.upgrades:
            reboot = "only if a package asks (reboot-required) or installs a kernel"
        else:
            reboot = "no"
        rows.append({**f.to_dict(), "would_reboot": reboot})
    return rows
