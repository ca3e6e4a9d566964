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

The way out of a crash loop: when older members keep panicking on a raft entry only the newer etcd
knows (committed while they ran, so every restart replays it), a first phase upgrades just them to
the version the others already run (the newer binary applies the entry), each gated on itself
serving again rather than on the whole cluster; the snapshot follows once quorum is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from kubeforge.model import Cluster, EtcdVersion, Host
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd import upgrade_checks as chk
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S
from kubeforge.plan.etcd.source import DEFAULT_ARCH, archive_for
from kubeforge.plan.phase import Phase, PhasePlan
from kubeforge.plan.steps import GateStep, LocalStep, RunStep
from kubeforge.plan.strategy import rolling, serial
from kubeforge.plan.warning import WarnOperator

log = logging.getLogger("kubeforge.etcd.upgrade")


@dataclass(frozen=True)
class EtcdUpgradeContext:
    cluster: Cluster
    members: tuple[Host, ...]  # in the order they are upgraded: the leader last
    arches: dict[str, str] | None = None  # host -> etcd arch name, for release archives
    snapshot: Callable[[], object] | None = None
    warning: str | None = None
    crashed: Sequence[str] = ()
    stopped: Sequence[str] = ()

    def arch(self, host: str) -> str:
        return (self.arches or {}).get(host, DEFAULT_ARCH)


class AcceptOlderPatch(WarnOperator):
    """--allow-older-patch dropped a hop's latest patch (the message is the workflow's decision)."""

    name = "AcceptOlderPatch"
    title = "Warning: a hop without its latest patch (--allow-older-patch)"
    log = log

    def message(self, ctx: EtcdUpgradeContext) -> str:
        return ctx.warning or ""


def member_lane(cluster: Cluster, hop: EtcdVersion, host, members: tuple, arch: str = DEFAULT_ARCH, *,
                crashed: bool = False) -> list:
    """``crashed``: the member cannot start on its version (see crashed_members_phases). It has no
    leadership to hand over, and its gate is on itself serving on ``hop`` with a leader (which needs
    a quorum: the first member back restores it beside the newer ones), not on every member."""
    at = replace(cluster, etcd=replace(cluster.etcd, version=hop))
    v = str(hop)
    pre = "crashed-" if crashed else ""
    others = tuple(m for m in members if m.name != host.name)
    steps: list = []
    if archive_for(cluster) is None:  # only apt refuses to run after a lost machine's half-done install
        steps.append(RunStep(host.name, chk.recover_package_state(), "Recover an interrupted package install",
                             unless=chk.package_state_clean(), key=f"{pre}recover-{v}"))
    if others and not crashed:
        steps.append(RunStep(host.name, chk.move_leadership_away(cluster, host, others, v),
                             "Move etcd leadership to another member", unless=chk.not_leader_or_done(cluster, host, v),
                             key=f"move-leader-{v}"))
    steps += cmd.install_steps(at, host, key=f"{pre}install-{v}", title=f"Install etcd {v}", arch=arch)
    steps.append(RunStep(host.name, cmd.systemctl("restart", "etcd", timeout=180),
                         f"{'Start' if crashed else 'Restart'} etcd {v}",
                         unless=chk.runs_version(cluster, host, v), key=f"{pre}restart-{v}"))
    if crashed:
        ready, title = cmd.member_healthy(cluster, host).script, f"Wait for {host.name} serving on {v}"
        what = f"{host.name} serving on {v} with a leader"
    else:
        ready, title = cmd.cluster_healthy(cluster, members).script, f"Wait for etcd healthy on {v}"
        what = f"etcd healthy on {len(members)} members with one leader, {host.name} on {v}"
    assert ready is not None  # member_healthy and cluster_healthy build scripts
    steps.append(GateStep(host.name, chk.member_upgraded(cluster, host, v, ready), title, what=what,
                          timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"{pre}gate-{v}-{host.name}"))
    return steps


class CrashedOnNewerEntry(WarnOperator):
    """What happened: members crash-looping on an entry only the first hop's etcd applies."""

    name = "CrashedOnNewerEntry"
    title = "Warning: members crash on a raft entry only a newer etcd applies"
    log = log

    def __init__(self, hop: EtcdVersion) -> None:
        self.hop = hop

    def message(self, ctx: EtcdUpgradeContext) -> str:
        hop = self.hop
        message = (f"{', '.join(ctx.crashed)} keep crashing on a raft entry only etcd {hop.minor_str} can apply (their journal "
                   f"shows `panic: not implemented`); upgrading them to {hop} first: the newer binary applies it")
        if ctx.stopped:
            message += f" (and starting {', '.join(ctx.stopped)}, left stopped with {hop} installed)"
        return message


class UpgradeCrashedEtcd:
    """The members that are down brought back on ``hop`` one at a time: first those an interrupted
    run left stopped with ``hop`` installed (they only need starting), then the crashed ones."""

    name = "UpgradeCrashedEtcd"
    title = "Bring the members that are down back on the first hop"
    strategy = rolling()

    def __init__(self, hop: EtcdVersion) -> None:
        self.hop = hop
        self.instance = str(hop)

    def title_for(self, ctx: EtcdUpgradeContext) -> str:
        return f"Bring the members that are down back on {self.hop}"

    def plan(self, ctx: EtcdUpgradeContext) -> PhasePlan:
        by_name = {h.name: h for h in ctx.cluster.etcd_members}
        hosts = tuple(by_name[n] for n in (*ctx.stopped, *ctx.crashed))
        lanes = [(h.name, member_lane(ctx.cluster, self.hop, h, hosts, ctx.arch(h.name), crashed=True)) for h in hosts]
        return PhasePlan.of(self, lanes, title=self.title_for(ctx))


class SnapshotEtcd:
    name = "SnapshotEtcd"
    title = "Take and verify an etcd snapshot first"
    strategy = serial()

    def plan(self, ctx: EtcdUpgradeContext) -> PhasePlan:
        assert ctx.snapshot is not None  # upgrade_phases is always given one
        return PhasePlan.of(self, [("local", [LocalStep("Snapshot etcd and verify it", ctx.snapshot, key="snapshot",
                                                        reaches="a healthy etcd member: the snapshot streams to this machine")])])


class UpgradeEtcd:
    """One hop: every member in turn (the leader last)."""

    name = "UpgradeEtcd"
    title = "Upgrade etcd to the hop's version (leader last)"
    strategy = rolling()

    def __init__(self, hop: EtcdVersion) -> None:
        self.hop = hop
        self.instance = str(hop)

    def title_for(self, ctx: EtcdUpgradeContext) -> str:
        return f"Upgrade etcd to {self.hop} (leader last)"

    def plan(self, ctx: EtcdUpgradeContext) -> PhasePlan:
        lanes = [(h.name, member_lane(ctx.cluster, self.hop, h, ctx.members, ctx.arch(h.name))) for h in ctx.members]
        return PhasePlan.of(self, lanes, title=self.title_for(ctx))


class CheckEtcdClusterVersion:
    """After the hop's last member: the cluster version (etcd raises it only once every member runs
    the new minor) and every member's server version."""

    name = "CheckEtcdClusterVersion"
    title = "Check that the etcd cluster runs the hop's version"
    strategy = serial()

    def __init__(self, hop: EtcdVersion) -> None:
        self.hop = hop
        self.instance = str(hop)

    def title_for(self, ctx: EtcdUpgradeContext) -> str:
        return f"Check that the etcd cluster runs {self.hop}"

    def plan(self, ctx: EtcdUpgradeContext) -> PhasePlan:
        hop, v, last = self.hop, str(self.hop), ctx.members[-1]
        gate = GateStep(last.name, chk.cluster_version_reached(ctx.cluster, ctx.members, v),
                        f"Wait for the etcd cluster version {hop.minor_str}",
                        what=f"etcd cluster version {hop.minor_str} with every member on {v}",
                        timeout_s=GATE_TIMEOUT_S, interval_s=2.0, key=f"cluster-version-{v}")
        return PhasePlan.of(self, [(last.name, [gate])], title=self.title_for(ctx))


# In order; the warnings, the crashed members and the snapshot come once, the last two once per hop.
PHASES = (AcceptOlderPatch, CrashedOnNewerEntry, UpgradeCrashedEtcd, SnapshotEtcd, UpgradeEtcd, CheckEtcdClusterVersion)


def _leader_last(cluster: Cluster, leader: str | None) -> tuple[Host, ...]:
    return tuple(sorted(cluster.etcd_members, key=lambda h: h.name == leader))


def upgrade_phases(cluster: Cluster, hops: Sequence[EtcdVersion], leader: str | None,
                   snapshot: Callable[[], object], *, warning: str | None = None,
                   arches: dict[str, str] | None = None, crashed: Sequence[str] = (),
                   stopped: Sequence[str] = ()) -> list[PhasePlan]:
    """``arches``: host -> etcd arch name, for release archives (workflows.etcd.sources).
    ``crashed``: members crash-looping on an entry only the first hop's etcd applies (upgraded
    first, before the snapshot, which needs the quorum they restore); ``stopped``: members left
    stopped with the first hop installed, started in that same first phase."""
    ctx = EtcdUpgradeContext(cluster, _leader_last(cluster, leader), arches, snapshot, warning, crashed, stopped)
    phases: list[Phase] = [AcceptOlderPatch()] if warning else []
    if crashed:
        phases += [CrashedOnNewerEntry(hops[0]), UpgradeCrashedEtcd(hops[0])]
    phases.append(SnapshotEtcd())
    for hop in hops:
        phases += [UpgradeEtcd(hop), CheckEtcdClusterVersion(hop)]
    return [phase.plan(ctx) for phase in phases]


def finish_phases(cluster: Cluster, hop: EtcdVersion, leader: str | None,
                  arches: dict[str, str] | None = None) -> list[PhasePlan]:
    """A resumed run whose members all reached its last hop already (interrupted, or failed, in the
    final checks): that hop's phases again, with the same step keys, so the journal skips what
    completed; every member lane's change steps are unchanged (their guards see the hop), and the
    gates and the cluster-version check not journaled yet run. No new snapshot."""
    ctx = EtcdUpgradeContext(cluster, _leader_last(cluster, leader), arches)
    return [UpgradeEtcd(hop).plan(ctx), CheckEtcdClusterVersion(hop).plan(ctx)]
