"""What every lifecycle workflow does around its plan: facts, the live cluster state from the first
control plane, secrets and files resolved before planning, then locks + journal + executor (or the
dry-run executor) over the very Plan that was shown and confirmed.

    facts = gather(cluster, pool)                         # read-only, every host in parallel
    state = probe_cluster(cluster, pool)                  # read-only, the first control plane
    report = execute(plan, cluster, pool, options, confirm=..., events=..., run_log=...)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import InputError, TransportError
from kubeforge.execute import (
    DryRunExecutor,
    Events,
    Executor,
    Journal,
    LockInfo,
    Report,
    hold_locks,
    run_confirmed,
)
from kubeforge.facts import FactsError, HostFacts
from kubeforge.model import Cluster
from kubeforge.plan.phase import Plan
from kubeforge.plan.up.context import (
    ADMIN_CONF,
    CNI_MARKER,
    KUBECTL,
    ClusterState,
    parse_nodes,
)
from kubeforge.transport.base import Command

log = logging.getLogger("kubeforge.workflows")

_MARK = "@@kubeforge-cluster "
PROBE_SCRIPT = f"""echo '{_MARK}admin'
if [ -f {ADMIN_CONF} ]; then sha256sum {ADMIN_CONF} | cut -d' ' -f1; fi
echo '{_MARK}nodes'
if [ -f {ADMIN_CONF} ] && command -v kubectl >/dev/null 2>&1; then
  timeout 20 {KUBECTL} get nodes -o json 2>/dev/null || echo '#unreachable'
fi
echo '{_MARK}cni'
cat {CNI_MARKER} 2>/dev/null || true
"""


@dataclass(frozen=True)
class RunOptions:
    """How the operator asked to run: the CLI flags every lifecycle command shares."""

    command: str  # "kubeforge up -i lab.yaml", for the lock's holder line
    dry_run: bool = False
    resume: str | None = None  # None: a fresh run; "" the latest unfinished run; else that run id
    break_lock: bool = False


def reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    return {n: f for n, f in facts.items() if isinstance(f, HostFacts)}


def require_reached(facts: Mapping[str, HostFacts | FactsError]) -> dict[str, HostFacts]:
    down = [f for f in facts.values() if isinstance(f, FactsError)]
    if down:
        names = ", ".join(f.host for f in down)
        raise TransportError(names, f"{len(down)} host(s) gave no facts: {down[0].message}")
    return reached(facts)


def split_probe(stdout: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def parse_cluster_probe(stdout: str) -> ClusterState:
    """The probe script's output as a ClusterState; an API that does not answer is a ``problem``."""
    s = split_probe(stdout)
    admin = s.get("admin") or None
    cni = s.get("cni") or None
    nodes_text = s.get("nodes", "")
    if not admin:
        return ClusterState(cni_marker=cni)
    if not nodes_text or nodes_text.startswith("#unreachable"):
        return ClusterState(initialized=False, admin_conf_sha256=admin, cni_marker=cni,
                            problem="admin.conf exists but the API server did not answer")
    try:
        nodes = parse_nodes(nodes_text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return ClusterState(admin_conf_sha256=admin, cni_marker=cni, problem=f"unreadable node list ({exc.__class__.__name__})")
    return ClusterState(initialized=True, nodes=nodes, admin_conf_sha256=admin, cni_marker=cni)


def probe_cluster(cluster: Cluster, pool) -> ClusterState:
    """Read-only: what the first control plane's API says (nodes, Ready, labels, taints)."""
    first = cluster.first_control_plane
    res = pool.get(first.name).run(Command(script=PROBE_SCRIPT, sudo=True, check=False, timeout=60,
                                           description="read the cluster state"))
    state = parse_cluster_probe(res.stdout)
    if state.problem:
        log.warning("cluster state: %s", state.problem, extra={"host": first.name})
    return state


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def open_journal(cluster: Cluster, workflow: str, options: RunOptions, run_dir: Path, log_path: Path) -> Journal:
    if options.resume is None:
        return Journal.start_in(run_dir, workflow)
    journal = Journal.resume(cluster.runs_dir, workflow, options.resume or None)
    journal.log_file = log_path
    return journal


class _LockedRun:
    """Runs a confirmed plan: journal opened, local and cluster locks held, the real executor."""

    def __init__(self, cluster: Cluster, pool, options: RunOptions, events: Events | None, run_dir: Path, log_path: Path):
        self.cluster, self.pool, self.options, self.events = cluster, pool, options, events
        self.run_dir, self.log_path = run_dir, log_path

    def run(self, plan: Plan) -> Report:
        journal = open_journal(self.cluster, plan.workflow, self.options, self.run_dir, self.log_path)
        info = LockInfo.mine(self.options.command, journal.run_id)
        first = self.pool.get(self.cluster.first_control_plane.name)
        with hold_locks(self.cluster.state_dir, first, info, break_lock=self.options.break_lock):
            return Executor(self.pool, journal=journal, events=self.events).run(plan)


def execute(
    plan: Plan,
    cluster: Cluster,
    pool,
    options: RunOptions,
    *,
    confirm: Callable[[Plan], bool],
    events: Events | None = None,
    run_dir: Path,
    log_path: Path,
    done_before: frozenset[str] = frozenset(),
    show: Callable[[Plan], None] | None = None,
) -> Report | None:
    """Confirm, then run ``plan``: for real under both locks with a journal (opened only once the
    operator said yes, so a declined plan leaves nothing to resume), or with the dry-run executor,
    which holds no transport and takes no lock on a host. None: the operator declined.
    ``show`` prints the plan where no confirmation does (a dry run, a plan with nothing to do)."""
    if show is not None and (options.dry_run or plan.is_noop):
        show(plan)
    if options.dry_run:
        return run_confirmed(plan, DryRunExecutor(events=events, done_before=done_before), lambda p: True)
    return run_confirmed(plan, _LockedRun(cluster, pool, options, events, run_dir, log_path), confirm)


def completed_steps(cluster: Cluster, workflow: str, resume: str | None) -> frozenset[str]:
    """Step ids an unfinished run already completed (for showing a resumed plan); nothing to resume
    is a clear error rather than a silent fresh start."""
    if resume is None:
        return frozenset()
    from kubeforge.execute.journal import (
        COMPLETE,
        JOURNAL,
        latest_unfinished,
        read_records,
    )

    run_id = resume or latest_unfinished(cluster.runs_dir, workflow)
    if not run_id:
        raise InputError(f"no unfinished '{workflow}' run to resume under {cluster.runs_dir}",
                         hint="run without --resume to start afresh")
    records = read_records(cluster.runs_dir / run_id / JOURNAL)
    return frozenset(r["step"] for r in records if r.get("type") == "step" and r.get("status") in COMPLETE)
