"""What the upgrade phases read: the model, the facts gathered before planning, the hop's version
and its rendered files. A phase is a pure function of this context."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeforge.model import Cluster, Host, PackageSourceKind, RenderedFile
from kubeforge.model.versions import KubeVersion
from kubeforge.plan.steps import slug
from kubeforge.plan.upgrade.commands import left_cordoned
from kubeforge.plan.upgrade.state import COMPONENTS, UpgradeFacts


@dataclass(frozen=True)
class UpgradeContext:
    cluster: Cluster
    facts: UpgradeFacts
    target: KubeVersion  # the version of this hop
    files: Mapping[str, Sequence[RenderedFile]] = field(default_factory=dict)  # per node: sources, pin, kubeadm config
    # Takes and verifies an etcd snapshot (raises when it cannot); None when there is no way to.
    backup: Callable[[], Any] | None = None
    backup_unavailable: str = "no backup function was given"
    hop: int = 1
    hops: int = 1
    # Per host: every file `up` renders for the cluster at this hop's version (runtime config with
    # the minor's pause image, kubeadm configs, applied.json). The upgrade writes what a new minor
    # changes, so the next `up` finds nothing to do; empty: not known (nothing of it is written).
    node_files: Mapping[str, Sequence[RenderedFile]] = field(default_factory=dict)
    # With --resume: the step ids the interrupted run completed (its journal). A node that run
    # drained and never uncordoned, already at the version, gets its readiness gate and uncordon.
    journaled: frozenset[str] = frozenset()

    @property
    def first(self) -> Host:
        return self.cluster.first_control_plane

    @property
    def other_control_planes(self) -> tuple[Host, ...]:
        return self.cluster.control_planes[1:]

    def key(self, *parts: str) -> str:
        """Step keys carry the hop's version: a multi-hop run journals the same step once per hop."""
        return f"v{self.target}-" + "-".join(slug(p) for p in parts)

    @property
    def offline(self) -> bool:
        """Packages come from the offline bundle kubeforge pushes (apt reads nothing else)."""
        return self.cluster.packages.kind is PackageSourceKind.OFFLINE

    @property
    def hop_note(self) -> str:
        return f" (hop {self.hop} of {self.hops})" if self.hops > 1 else ""

    @property
    def offered_note(self) -> str:
        """Which package source offered the hop's version (read at plan time)."""
        if self.facts.offered is None or self.target not in self.facts.offered:
            return ""
        return f"; {self.target} offered by {self.facts.offered_from}"

    def title(self, text: str) -> str:
        return f"{text} to {self.target}{self.hop_note}"

    # --- convergence -------------------------------------------------------------------------------
    # "Done" means at the hop's version or beyond: a node an earlier run already took further is
    # never moved back by an intermediate hop.
    def _at_least(self, host: Host, components) -> bool:
        m = self.facts.machines.get(host.name)
        if m is None:
            return False
        return all((v := m.packages.get(c)) is not None and v >= self.target and c in m.held for c in components)

    def kubelet_done(self, host: Host) -> bool:
        """kubelet and kubectl installed and held at the target, and the running kubelet reports it."""
        running = self.facts.kubelet(host.name)
        return self._at_least(host, ("kubelet", "kubectl")) and running is not None and running >= self.target

    def control_plane_done(self, host: Host) -> bool:
        m = self.facts.machines.get(host.name)
        return bool(m and m.apiserver is not None and m.apiserver >= self.target) and self._at_least(host, ("kubeadm",))

    def converged(self, host: Host) -> bool:
        if not (self._at_least(host, COMPONENTS) and self.kubelet_done(host)):
            return False
        return self.control_plane_done(host) if host.is_control_plane else True

    def all_converged(self) -> bool:
        return all(self.converged(h) for h in self.cluster.nodes)

    # --- a resumed run ------------------------------------------------------------------------------
    def left_cordoned(self, host: Host) -> bool:
        """The resumed run drained ``host`` in this hop and stopped before uncordoning it, and the
        node is still cordoned: its kubelet may already run the version (so it looks converged)."""
        return left_cordoned(self.facts.nodes.get(host.name), self.journaled, self.key("drain", host.name),
                             self.key("uncordon", host.name))

    @property
    def resumes_hop(self) -> bool:
        """The resumed run had already done steps of this hop (it may have stopped before recording it)."""
        prefix = f"v{self.target}-"
        return any(i.rsplit("/", 1)[-1].startswith(prefix) for i in self.journaled)

    def files_of(self, host: Host, paths: Sequence[str]) -> list[RenderedFile]:
        return [f for f in self.files.get(host.name, ()) if f.path in paths]

    def up_files_of(self, host: Host, paths: Sequence[str]) -> list[RenderedFile]:
        return [f for f in self.node_files.get(host.name, ()) if f.path in paths]
