"""etcd version upgrades: a verified snapshot first, then per hop (one minor at a time, see
model.upgrade_path.etcd_upgrade_hops) one member at a time with the leader last, then a gate that
the cluster itself moved to the hop's version.

Each member's lane in a hop, every step skipped where the member has already converged, so a run
that lost a machine half-way is continued by running it again:
  recover an interrupted package install   (Debian packages; unless: dpkg clean, no leftover policy-rc.d)
  move leadership away                     (unless: not the leader, or already on the hop)
  install the hop's packages               (cmd.install_steps: unless installed at that version)
  restart etcd                             (unless: the running process already answers as the hop)
  gate: cluster healthy, this member on the hop
After the last member: gate on the cluster version (etcd raises it only once every member runs the
new minor) and on every member's server version.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Sequence

from kubeforge.model import Cluster, EtcdVersion
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd import upgrade_checks as chk
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
from kubeforge.plan.etcd.source import DEFAULT_ARCH, archive_for
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep, LocalStep, RunStep
from kubeforge.plan.strategy import rolling, serial

log = logging.getLogger("kubeforge.etcd.upgrade")


def _warn(message: str) -> Callable[[], bool]:
    def fn() -> bool:
        log.warning(message)
        return False  # nothing changed: reported unchanged, but the warning is in the run log

    return fn


def warning_phase(message: str) -> PhasePlan:
    """A warning the operator sees in the plan and that the run log keeps."""
    return PhasePlan.of(name="AcceptOlderPatch", title=f"Warning: {message}", strategy=serial(),
                        lanes=[("local", [LocalStep(f"Warning: {message}", _warn(message), key="warning")])])


def member_lane(cluster: Cluster, hop: EtcdVersion, host, members: tuple, arch: str = DEFAULT_ARCH) -> list:
    at = replace(cluster, etcd=replace(cluster.etcd, version=hop))
    v = str(hop)
    others = tuple(m for m in members if m.name != host.name)
    steps: list = []
    if archive_for(cluster) is None:  # only apt refuses to run after a lost machine's half-done install
        steps.append(RunStep(host.name, chk.recover_package_state(), "Recover an interrupted package install",
                             unless=chk.package_state_clean(), key=f"recover-{v}"))
    if others:
        steps.append(RunStep(host.name, chk.move_leadership_away(cluster, host, others, v),
                             "Move etcd leadership to another member", unless=chk.not_leader_or_done(cluster, host, v),
                             key=f"move-leader-{v}"))
    steps += cmd.install_steps(at, host, key=f"install-{v}", title=f"Install etcd {v}", arch=arch)
    steps.append(RunStep(host.name, cmd.systemctl("restart", "etcd", timeout=180), f"Restart etcd {v}",
                         unless=chk.runs_version(cluster, host, v), key=f"restart-{v}"))
    healthy = cmd.cluster_healthy(cluster, members).script
    steps.append(GateStep(host.name, chk.member_upgraded(cluster, host, v, healthy), f"Wait for etcd healthy on {v}",
                          what=f"etcd healthy on {len(members)} members with one leader, {host.name} on {v}",
                          timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-{v}-{host.name}"))
    return steps


def upgrade_phases(cluster: Cluster, hops: Sequence[EtcdVersion], leader: str | None,
                   snapshot: Callable[[], object], *, warning: str | None = None,
                   arches: dict[str, str] | None = None) -> list[PhasePlan]:
    """``arches``: host -> etcd arch name, for release archives (workflows.etcd.sources)."""
    members = tuple(sorted(cluster.etcd_members, key=lambda h: h.name == leader))
    phases = [warning_phase(warning)] if warning else []
    phases.append(PhasePlan.of(name="SnapshotEtcd", title="Take and verify an etcd snapshot first", strategy=serial(),
                               lanes=[("local", [LocalStep("Snapshot etcd and verify it", snapshot, key="snapshot")])]))
    for hop in hops:
        v = str(hop)
        phases.append(PhasePlan.of(name=f"UpgradeEtcd-{v}", title=f"Upgrade etcd to {v} (leader last)",
                                   strategy=rolling(),
                                   lanes=[(h.name, member_lane(cluster, hop, h, members,
                                                               (arches or {}).get(h.name, DEFAULT_ARCH)))
                                          for h in members]))
        last = members[-1]
        gate = GateStep(last.name, chk.cluster_version_reached(cluster, members, v),
                        f"Wait for the etcd cluster version {hop.minor_str}",
                        what=f"etcd cluster version {hop.minor_str} with every member on {v}",
                        timeout_s=GATE_TIMEOUT_S, interval_s=2.0, key=f"cluster-version-{v}")
        phases.append(PhasePlan.of(name=f"CheckEtcdClusterVersion-{v}",
                                   title=f"Check that the etcd cluster runs {v}", strategy=serial(),
                                   lanes=[(last.name, [gate])]))
    return phases
