"""etcd version upgrades: per hop (one minor at a time, see model.upgrade_path.etcd_upgrade_path),
one member at a time with the leader last: new packages installed under policy-rc.d, etcd
restarted, a health gate before the next member. A snapshot is taken before the first hop."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from kubeforge.model import Cluster, EtcdVersion
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.install import health_gate
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import LocalStep, RunStep
from kubeforge.plan.strategy import rolling, serial


def upgrade_phases(cluster: Cluster, hops: list[EtcdVersion], leader: str | None,
                   snapshot: Callable[[], object]) -> list[PhasePlan]:
    members = sorted(cluster.etcd_members, key=lambda h: h.name == leader)
    phases = [PhasePlan.of(name="SnapshotEtcd", title="Take and verify an etcd snapshot first", strategy=serial(),
                           lanes=[("local", [LocalStep("Snapshot etcd and verify it", snapshot, key="snapshot")])])]
    for hop in hops:
        at = replace(cluster, etcd=replace(cluster.etcd, version=hop))
        lanes: list[tuple[str, list]] = []
        for h in members:
            lanes.append((h.name, [
                *cmd.install_steps(at, h, key=f"install-{hop}", title=f"Install etcd {hop}"),
                RunStep(h.name, cmd.systemctl("restart", "etcd", timeout=180), f"Restart etcd {hop}", key=f"restart-{hop}"),
                health_gate(at, h, tuple(members), key=f"gate-{hop}-{h.name}", title=f"Wait for etcd healthy on {hop}"),
            ]))
        phases.append(PhasePlan.of(name=f"UpgradeEtcd-{hop}", title=f"Upgrade etcd to {hop} (leader last)",
                                   strategy=rolling(), lanes=lanes))
    return phases

