"""Install etcd on dedicated members, or converge a running cluster to the inventory.

Phases, in order:
  InstallEtcdPackages   (parallel)  package source files, apt install at the wanted version; or the
                                    verified release archive pushed and unpacked into /usr/local/bin
  PrepareEtcdMembers    (parallel)  etcd user and data dir, PKI, etcd.env, etcd.service, enable
  StartEtcdMembers      (parallel)  a new cluster: every member started at once (--no-block: a
                                    Type=notify unit only reports started once quorum exists)
  RestartEtcdMembers    (rolling)   a running cluster whose configuration changed: one member at a
                                    time, the leader last, a health gate after each
  WaitForEtcdHealthy    (one host)  every member healthy and one leader
  RecordEtcdConfig      (parallel)  the applied-config stamp that tells the next run what is running

A converged cluster plans no start, restart or gate at all: every step reports unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubeforge.facts.etcd import STAMP_PATH, EtcdHostFacts
from kubeforge.model import Cluster, Host, RenderedFile
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep, Step
from kubeforge.plan.strategy import parallel, rolling, serial

GATE_TIMEOUT_S = 120.0


def config_sha(files: Sequence[RenderedFile]) -> str:
    """What a member runs with: its env, unit and PKI files (paths, bytes, modes, owners)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        if f.path == STAMP_PATH:
            continue
        h.update(f"{f.path}\0{f.sha256}\0{f.mode:o}\0{f.owner}:{f.group}\n".encode())
    return h.hexdigest()


def stamp_file(sha: str) -> RenderedFile:
    return RenderedFile(STAMP_PATH, (sha + "\n").encode(), mode=0o644, source="kubeforge etcd")


@dataclass(frozen=True)
class MemberInput:
    host: Host
    package_files: tuple[RenderedFile, ...]  # apt sources for the etcd packages (none for archives)
    files: tuple[RenderedFile, ...]  # PKI + etcd.env + etcd.service
    facts: EtcdHostFacts
    arch: str = "amd64"  # which release archive the member gets, when etcd comes from archives

    @property
    def sha(self) -> str:
        return config_sha(self.files)

    @property
    def converged(self) -> bool:
        return self.facts.active and self.facts.has_data and self.facts.stamp == self.sha


@dataclass(frozen=True)
class InstallInput:
    cluster: Cluster
    members: tuple[MemberInput, ...]  # inventory order
    cluster_exists: bool  # some member holds data: restart members, never bootstrap again
    leader: str | None = None
    # members that join a running cluster later in the plan: the steps that clear what an earlier
    # attempt left on them (see PrepareEtcdMembers)
    joining: Mapping[str, Sequence[RunStep]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return all(m.converged for m in self.members)

    def member(self, name: str) -> MemberInput:
        return next(m for m in self.members if m.host.name == name)


def health_gate(cluster: Cluster, on: Host, members: tuple[Host, ...], *, key: str = "", title: str = "") -> GateStep:
    return GateStep(
        on.name,
        cmd.cluster_healthy(cluster, members),
        title or "Wait for etcd healthy",
        what=f"etcd healthy on {len(members)} member{'s' if len(members) != 1 else ''} with one leader",
        timeout_s=GATE_TIMEOUT_S,
        interval_s=1.0,
        key=key,
    )


class InstallEtcdPackages:
    name = "InstallEtcdPackages"
    title = "Install etcd packages"
    strategy = parallel()

    def plan(self, inp: InstallInput) -> PhasePlan:
        lanes: list[tuple[str, list[Step]]] = []
        for m in inp.members:
            steps: list[Step] = [PutFileStep(m.host.name, f) for f in m.package_files]
            steps.extend(cmd.install_steps(inp.cluster, m.host, arch=m.arch))
            lanes.append((m.host.name, steps))
        return PhasePlan.of(self, lanes)


def enable_step(host: Host) -> RunStep:
    return RunStep(host.name, cmd.systemctl("enable", "etcd"), "Enable etcd at boot", unless=cmd.is_enabled())


class PrepareEtcdMembers:
    """``inp.joining``: members that join a running cluster later in the plan, with the steps that
    clear what an earlier attempt left on them; they are enabled at boot only once added (by
    kubeforge.plan.etcd.membership), never here: an etcd that starts at boot before its member add
    starts against a cluster that does not list it."""

    name = "PrepareEtcdMembers"
    title = "Prepare etcd members"
    strategy = parallel()

    def plan(self, inp: InstallInput) -> PhasePlan:
        user, user_guard = cmd.prepare_user(inp.cluster)
        lanes: list[tuple[str, list[Step]]] = []
        for m in inp.members:
            h = m.host.name
            steps: list = [RunStep(h, user, "Create the etcd user and data dir", unless=user_guard)]
            steps += [PutFileStep(h, f) for f in m.files]
            steps += list(inp.joining.get(h, ()))
            steps.append(RunStep(h, cmd.systemctl("daemon-reload"), "Reload systemd", unless=cmd.stamp_is(m.sha)))
            if h not in inp.joining:
                steps.append(enable_step(m.host))
            lanes.append((h, steps))
        return PhasePlan.of(self, lanes)


CONVERGED = "every member runs this configuration and is active"


class StartEtcdMembers:
    """A new cluster: every member at once (--no-block: a Type=notify unit only reports started
    once quorum exists)."""

    name = "StartEtcdMembers"
    title = "Start every etcd member of the new cluster"
    strategy = parallel()

    def plan(self, inp: InstallInput) -> PhasePlan:
        if inp.converged:
            return PhasePlan.noop(self, CONVERGED)
        lanes = [
            (m.host.name, [RunStep(m.host.name, cmd.systemctl("start", "--no-block", "etcd"), "Start etcd",
                                   unless=cmd.is_active())])
            for m in inp.members
        ]
        return PhasePlan.of(self, lanes)


class RestartEtcdMembers:
    """Members whose configuration changed (or that are stopped), one at a time, leader last."""

    name = "RestartEtcdMembers"
    title = "Restart changed etcd members"
    strategy = rolling()

    def plan(self, inp: InstallInput) -> PhasePlan:
        due = [m for m in inp.members if not m.converged]
        due.sort(key=lambda m: m.host.name == inp.leader)
        all_hosts = tuple(m.host for m in inp.members)
        lanes: list[tuple[str, list[Step]]] = []
        for m in due:
            h = m.host.name
            if m.facts.active:
                step = RunStep(h, cmd.systemctl("restart", "etcd", timeout=180), "Restart etcd with the new configuration")
            else:
                step = RunStep(h, cmd.systemctl("start", "etcd", timeout=180), "Start etcd", unless=cmd.is_active())
            lanes.append((h, [step, health_gate(inp.cluster, m.host, all_hosts, key=f"gate-after-{h}",
                                                title=f"Wait for etcd healthy after {h}")]))
        return PhasePlan.of(self, lanes, reason_if_empty="every member already runs this configuration")


class WaitForEtcdHealthy:
    name = "WaitForEtcdHealthy"
    title = "Wait for a healthy etcd cluster"
    strategy = serial()

    def plan(self, inp: InstallInput) -> PhasePlan:
        if inp.converged:
            return PhasePlan.noop(self, CONVERGED)
        first = inp.members[0].host
        hosts = tuple(m.host for m in inp.members)
        return PhasePlan.of(self, [(first.name, [health_gate(inp.cluster, first, hosts)])])


class RecordEtcdConfig:
    name = "RecordEtcdConfig"
    title = "Record the applied etcd configuration"
    strategy = parallel()

    def plan(self, inp: InstallInput) -> PhasePlan:
        lanes = [(m.host.name, [PutFileStep(m.host.name, stamp_file(m.sha), title=self.title)]) for m in inp.members]
        return PhasePlan.of(self, lanes)


PHASES = (InstallEtcdPackages(), PrepareEtcdMembers(), StartEtcdMembers(), RestartEtcdMembers(), WaitForEtcdHealthy(),
          RecordEtcdConfig())


def install_phases(inp: InstallInput) -> list[PhasePlan]:
    """A running cluster whose configuration changed restarts its members one by one; a new one
    starts them all and waits; a converged one says there is nothing to start."""
    skip = (StartEtcdMembers, WaitForEtcdHealthy) if inp.cluster_exists and not inp.converged else (RestartEtcdMembers,)
    return [phase.plan(inp) for phase in PHASES if not isinstance(phase, skip)]
