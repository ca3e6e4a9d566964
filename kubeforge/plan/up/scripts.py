"""Shell snippets the `up` phases share: restart-when-changed, kubectl on a control plane, steps for
files. Every mutating script is guarded (``unless``) so a re-run reports it unchanged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from shlex import quote as q

from kubeforge.model import Host, RenderedFile
from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.plan.up.context import STAMP_DIR
from kubeforge.transport.base import Command


def puts(host: Host, files: Iterable[RenderedFile]) -> list[PutFileStep]:
    return [PutFileStep(host.name, f) for f in files]


def _digest_of(paths: Sequence[str]) -> str:
    # One digest over the unit's inputs; a missing file counts as empty rather than failing the guard.
    return "$(cat " + " ".join(q(p) for p in paths) + " 2>/dev/null | sha256sum | cut -d' ' -f1)"


def _written_since_start(unit: str, inputs: Sequence[str]) -> str:
    # Whole seconds on both sides: a file written in the second the unit started counts as read by it.
    return (f"s=$(date -d \"$(systemctl show -p ActiveEnterTimestamp --value {q(unit)})\" +%s 2>/dev/null || echo 0) && "
            f"for f in {' '.join(q(p) for p in inputs)}; do "
            "[ \"$(stat -c %Y \"$f\" 2>/dev/null || echo 0)\" -le \"$s\" ] || exit 1; done")


def restart_when_changed(host: Host, unit: str, inputs: Sequence[str], title: str | None = None, *, block: bool = True,
                         reload: bool = False, reads_at_start: bool = False) -> RunStep:
    """(Re)start ``unit`` when it is not active or when its input files changed since kubeforge last
    started it (a stamp under /etc/kubeforge/stamps holds their digest). ``reload``: a running unit
    is reloaded instead (``systemctl reload-or-restart``), keeping its connections. ``reads_at_start``:
    also when an input was written after the unit's last start. Someone else may have changed the
    file and restarted the unit on it; kubeforge putting its own content back then matches the stamp,
    yet the unit still runs what the other party wrote until it is restarted."""
    stamp = f"{STAMP_DIR}/{unit}.sha256"
    verb = "reload-or-restart" if reload else "restart"
    start = f"systemctl {verb}" if block else f"systemctl {verb} --no-block"
    script = (
        f"mkdir -p {STAMP_DIR}\n"
        "systemctl daemon-reload\n"
        f"systemctl enable {q(unit)} >/dev/null 2>&1\n"
        f"{start} {q(unit)}\n"
        f"echo {_digest_of(inputs)} > {stamp}\n"
    )
    guard = f"systemctl is-active --quiet {q(unit)} && [ \"$(cat {stamp} 2>/dev/null)\" = \"{_digest_of(inputs)}\" ]"
    if reads_at_start:
        guard += " && " + _written_since_start(unit, inputs)
    return RunStep(
        host.name,
        Command(script=script, sudo=True, description=f"restart {unit}"),
        title or f"Start {unit} with its configuration",
        unless=Command(script=guard, sudo=True),
        key=f"restart-{unit}",
    )


def node_registered_gate(host: Host, node: str, kubeconfig: str, timeout_s: float) -> GateStep:
    """Wait until the API knows ``node``, asking from ``host`` with ``kubeconfig``. Not Ready: nodes
    only turn Ready once the CNI is applied, after every node has joined."""
    probe = Command(script=f"kubectl --kubeconfig {kubeconfig} get node {q(node)} >/dev/null", sudo=True, timeout=30)
    return GateStep(host.name, probe, f"Wait for node {node} registered", what=f"node {node} registered in the API",
                    timeout_s=timeout_s, interval_s=1.0)


def api_gate(host: Host, timeout_s: float) -> GateStep:
    probe = Command(script=f"{KUBECTL} get --raw /healthz >/dev/null", sudo=True, timeout=30)
    return GateStep(host.name, probe, "Wait for the API server", what=f"the API server answering on {host.name}", timeout_s=timeout_s, interval_s=1.0)
