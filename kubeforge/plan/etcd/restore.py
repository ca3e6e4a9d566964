"""Restore every member from one verified snapshot (external etcd; stacked: restore_stacked.py).

Phases, in order (each stops at the first failure):
  StopApiServers      control planes: kube-apiserver's static pod manifest moved aside (kubelet
                      stops the pod), so nothing writes to etcd while it is replaced
  StopEtcd            every member stopped
  PushSnapshot        the same snapshot on every member (0600), its sha256 checked there
  RestoreMemberData   etcd stopped again (its machine may have restarted), old data dir moved to
                      <data_dir>.kubeforge-<stamp> (never deleted; the stamp is the run's, kept by
                      --resume, so a resumed run keeps the first attempt's aside dir), then
                      `snapshot restore` with the member's name, peer URL, the initial cluster and a
                      NEW cluster token, owned by etcd
  StartEtcdMembers    every member at once (--no-block: they wait for each other)
  WaitForEtcdHealthy  every member healthy, one leader
  StartApiServers     the manifests put back
  RemoveSnapshotCopies

Stacked etcd has the same phases; its members are the control planes' static pods, so stopping and
starting them is moving etcd.yaml out of and back into the kubelet's manifest directory.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from kubeforge.facts.etcd import EtcdHostFacts
from kubeforge.facts.etcd_stacked import APISERVER_ASIDE
from kubeforge.facts.etcdctl import REMOTE_WORK_DIR, initial_cluster, peer_url
from kubeforge.model import Cluster, EtcdTopology, Host, RenderedFile
from kubeforge.model.kubeadm_paths import APISERVER_MANIFEST
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd import restore_stacked as st
from kubeforge.plan.etcd.install import health_gate
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.plan.strategy import parallel, serial
from kubeforge.transport.base import Command

# Outside manifests/, so the kubelet does not see it while etcd is replaced.
BUMP_REVISION = 1_000_000_000  # what kubeadm/etcd docs suggest: far beyond any watch cache


@dataclass(frozen=True)
class RestoreInput:
    cluster: Cluster
    members: tuple[Host, ...]
    facts: dict[str, EtcdHostFacts]
    control_planes: tuple[Host, ...]  # whose API servers are stopped while restoring
    snapshot: bytes  # the verified plain snapshot
    snapshot_sha256: str
    backup_name: str
    stamp: str  # UTC time of this restore, names the old data dirs and the new token
    stacked: tuple[st.StackedMember, ...] = ()  # stacked etcd: each control plane's member, from its manifest

    @property
    def is_stacked(self) -> bool:
        return self.cluster.etcd.topology is EtcdTopology.STACKED

    @property
    def token(self) -> str:
        return f"{self.cluster.name}-restore-{self.stamp}"

    @property
    def remote_path(self) -> str:
        return f"{REMOTE_WORK_DIR}/restore-{self.backup_name}.db"

    @property
    def aside(self) -> str:
        return f"{self.cluster.etcd.data_dir.rstrip('/')}.kubeforge-{self.stamp}"


def restore_command(inp: RestoreInput, host: Host) -> Command:
    c = inp.cluster
    f = inp.facts.get(host.name)
    data = shlex.quote(c.etcd.data_dir)
    aside = shlex.quote(inp.aside)
    snap = shlex.quote(inp.remote_path)
    common = [
        f"--name={host.name}",
        f"--initial-cluster={initial_cluster(c, inp.members)}",
        f"--initial-cluster-token={inp.token}",
        f"--initial-advertise-peer-urls={peer_url(c, host)}",
        f"--data-dir={c.etcd.data_dir}",
    ]
    if f is not None and f.etcdutl:
        extra = []
        if "--bump-revision" in f.restore_flags:
            extra.append(f"--bump-revision={BUMP_REVISION}")
        if "--mark-compacted" in f.restore_flags:
            extra.append("--mark-compacted")
        tool = "etcdutl snapshot restore " + snap + " " + " ".join(shlex.quote(a) for a in common + extra)
    else:
        tool = "ETCDCTL_API=3 etcdctl snapshot restore " + snap + " " + " ".join(shlex.quote(a) for a in common)
    script = "\n".join(
        [
            # a machine that restarted since "Stop etcd" (power lost, then --resume) boots etcd again
            "systemctl stop etcd",
            "if systemctl is-active --quiet etcd; then echo 'etcd is still running' >&2; exit 1; fi",
            # keep whatever was there, even an empty dir, so nothing is ever lost by a restore
            f"if [ -e {data} ] && [ ! -e {aside} ]; then mv {data} {aside}; fi",
            f"rm -rf {data}",
            f"{tool} >/dev/null",
            f"chown -R etcd:etcd {data}",
            f"chmod 0700 {data}",
            "sync",  # on disk before the step is journaled done: a resumed run never restores it again
        ]
    )
    return Command(script=script, sudo=True, timeout=900, description=f"restore etcd data of {host.name}")


def _stacked_lanes(inp: RestoreInput):
    """(stop, restore, start) lanes of the control planes' etcd static pods."""
    found = {m.host: m for m in inp.stacked}
    members = [found[h.name] for h in inp.members]
    stop, restore, start = [], [], []
    for h in inp.members:
        stop.append((h.name, [RunStep(h.name, st.stop_etcd_command(), "Stop etcd (manifest moved aside, etcd gone)",
                                      unless=st.etcd_stopped_check())]))
        restore.append((h.name, [RunStep(h.name, st.restore_command(found[h.name], members, snapshot=inp.remote_path,
                                                                    token=inp.token, stamp=inp.stamp,
                                                                    bump_revision=BUMP_REVISION),
                                         "Keep the old data dir aside and restore")]))
        start.append((h.name, [RunStep(h.name, st.start_etcd_command(), "Start etcd (manifest put back)",
                                       unless=st.etcd_started_check())]))
    return stop, restore, start


def _member_lanes(inp: RestoreInput, stacked: int, external: Callable[[Host], RunStep]) -> list:
    """Each member's step: ``external(member)`` for external etcd; for stacked etcd the static pod's
    (``stacked``: 0 stop, 1 restore, 2 start; see _stacked_lanes)."""
    if inp.is_stacked:
        return _stacked_lanes(inp)[stacked]
    return [(m.name, [external(m)]) for m in inp.members]


def _api_server_lanes(inp: RestoreInput, stop: bool):
    """kube-apiserver's static pod manifest moved aside (the kubelet stops the pod) or put back."""
    manifest, aside = shlex.quote(APISERVER_MANIFEST), shlex.quote(APISERVER_ASIDE)
    src, dst = (manifest, aside) if stop else (aside, manifest)
    title = "Stop kube-apiserver (manifest moved aside)" if stop else "Start kube-apiserver (manifest put back)"
    return [(cp.name, [RunStep(cp.name, Command(script=f"mv {src} {dst}", sudo=True, timeout=60), title,
                               unless=Command(script=f"[ ! -e {src} ]", sudo=True, timeout=30))])
            for cp in inp.control_planes]


class StopApiServers:
    name = "StopApiServers"
    title = "Stop the API servers"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, _api_server_lanes(inp, stop=True),
                            reason_if_empty="no control plane runs kube-apiserver from a static pod manifest")


class StopEtcd:
    name = "StopEtcd"
    title = "Stop etcd on every member"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, _member_lanes(inp, 0, lambda m: RunStep(m.name, cmd.systemctl("stop", "etcd"), "Stop etcd")))


class PushSnapshot:
    name = "PushSnapshot"
    title = "Push the snapshot to every member"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        snap_file = RenderedFile(inp.remote_path, inp.snapshot, mode=0o600, source=f"backup {inp.backup_name}")
        check = Command(script=f"echo {shlex.quote(inp.snapshot_sha256)}'  '{shlex.quote(inp.remote_path)} | sha256sum -c --quiet -",
                        sudo=True, timeout=300, description="snapshot checksum on the member")
        return PhasePlan.of(self, [(m.name, [PutFileStep(m.name, snap_file, title="Push the snapshot"),
                                             RunStep(m.name, check, "Compare the snapshot checksum")]) for m in inp.members])


class RestoreMemberData:
    name = "RestoreMemberData"
    title = "Restore every member's data from the snapshot"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, _member_lanes(inp, 1, lambda m: RunStep(m.name, restore_command(inp, m),
                                                                          "Keep the old data dir aside and restore")))


class StartEtcdMembers:
    name = "StartEtcdMembers"
    title = "Start every etcd member"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, _member_lanes(inp, 2, lambda m: RunStep(m.name, cmd.systemctl("start", "--no-block", "etcd"),
                                                                          "Start etcd")))


class WaitForEtcdHealthy:
    name = "WaitForEtcdHealthy"
    title = "Wait for a healthy etcd cluster"
    strategy = serial()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        first = inp.members[0]
        return PhasePlan.of(self, [(first.name, [health_gate(inp.cluster, first, inp.members)])])


class StartApiServers:
    name = "StartApiServers"
    title = "Start the API servers"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, _api_server_lanes(inp, stop=False), reason_if_empty="no API server was stopped")


class RemoveSnapshotCopies:
    name = "RemoveSnapshotCopies"
    title = "Remove the snapshot copies"
    strategy = parallel()

    def plan(self, inp: RestoreInput) -> PhasePlan:
        return PhasePlan.of(self, [(m.name, [RunStep(m.name, Command(argv=["rm", "-f", inp.remote_path], sudo=True, timeout=60),
                                                     "Remove the snapshot copy")]) for m in inp.members])


PHASES = (StopApiServers(), StopEtcd(), PushSnapshot(), RestoreMemberData(), StartEtcdMembers(), WaitForEtcdHealthy(),
          StartApiServers(), RemoveSnapshotCopies())


def restore_phases(inp: RestoreInput) -> list[PhasePlan]:
    return [phase.plan(inp) for phase in PHASES]
