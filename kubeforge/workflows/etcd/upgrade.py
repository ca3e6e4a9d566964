"""`kubeforge etcd upgrade --to X.Y.Z`: tell the truth first, then snapshot and roll member by member.

Refused before anything changes: stacked etcd (kubeadm upgrades it); an unfinished Kubernetes
upgrade (its journal has no successful end: the two never overlap); a downgrade or an unsupported
minor; members on versions that are not one step of this upgrade apart; a cluster that is not fully
healthy (exit 4); a hop the package source does not offer (exit 7, naming the hop, why the path
needs it, what the source offers and the ways out); a rolling 3.4 -> 3.5 with etcd auth enabled.

Before any etcd request that raft would append to its log, every member is asked over SSH which
server and cluster version it runs (its metrics listener on loopback: nothing proposed); every
request after that is picked by the lowest of those, never by the local etcdctl or the member asked.

Interrupted runs: members left on exactly {v, next hop of the path from v} continue with the same
command (or ``--resume``, which also keeps the same journal); members that already reached a hop
skip it step by step (see kubeforge.plan.etcd.upgrade). When the older members of such a cluster
crash-loop on an entry only the newer etcd applies (a 3.5-only request sent while they ran 3.4, by
anyone), the health gate does not refuse: the plan upgrades them first, and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from kubeforge.errors import CheckFailed, CommandFailed, InputError, SafetyRefusal
from kubeforge.execute.journal import latest_unfinished, run_summary
from kubeforge.facts.etcd import gather_member_facts
from kubeforge.facts.etcd_upgrade import AuthState, read_auth, read_member_versions, read_offered
from kubeforge.model import Cluster
from kubeforge.model.upgrade_path import EtcdHop, dropped_patch_hop, etcd_upgrade_hops, needs_v2store_check
from kubeforge.model.versions import EtcdVersion, Version, parse_etcd
from kubeforge.plan.etcd.source import archive_for
from kubeforge.plan.etcd.upgrade import upgrade_phases
from kubeforge.plan.etcd.upgrade_checks import ClusterVersions
from kubeforge.plan.phase import Plan
from kubeforge.workflows.etcd.common import require_external
from kubeforge.workflows.etcd.status import ClusterStatus, gather_status

log = logging.getLogger("kubeforge.etcd.upgrade")


def workflow_name(target: Version) -> str:
    return f"etcd upgrade {target}"


def unfinished_kubernetes_upgrade(runs_dir: Path) -> str | None:
    """The run id of an unfinished `upgrade X.Y.Z` (Kubernetes) run, if any."""
    if not runs_dir.is_dir():
        return None
    workflows = {run_summary(p).get("workflow") for p in runs_dir.iterdir() if p.is_dir()}
    for wf in sorted(w for w in workflows if isinstance(w, str) and w.startswith("upgrade ")):
        run = latest_unfinished(runs_dir, wf)
        if run:
            return run
    return None


@dataclass(frozen=True)
class UpgradeDecision:
    """What the members run and where this upgrade takes them."""

    current: Version  # the oldest version a member runs: the path starts there
    hops: tuple[EtcdHop, ...]
    continuing: bool  # members were left on two adjacent versions of this path by an earlier run
    warning: str | None  # set when --allow-older-patch dropped a hop


def decide(versions: dict[str, str], target: Version, *, allow_older_patch: bool = False) -> UpgradeDecision:
    """The path from what the members run (``{member: version}``) to ``target``. Members on two
    versions are accepted only as an interrupted run of this very upgrade: exactly {v, the first hop
    of the path from v}; anything else is refused, naming who runs what."""
    parsed = {m: parse_etcd(v) for m, v in versions.items()}
    distinct = sorted(set(parsed.values()))
    current = distinct[0]
    continuing = False
    if len(distinct) > 1:
        who = "; ".join(f"{v}: {', '.join(sorted(m for m in parsed if parsed[m] == v))}" for v in distinct)
        if len(distinct) > 2:
            raise SafetyRefusal(f"members run {len(distinct)} different etcd versions ({who}); "
                                "kubeforge only continues an upgrade left between two adjacent hops",
                                hint="bring the members to one version by hand first")
        hops = etcd_upgrade_hops(current, target, allow_older_patch=allow_older_patch)
        if hops[0].version != distinct[1]:
            path = " -> ".join(str(h) for h in hops)
            hint = "finish or undo the interrupted upgrade (the one that left them so) first"
            if not allow_older_patch and etcd_upgrade_hops(current, target, allow_older_patch=True)[0].version == distinct[1]:
                hint = "the interrupted run went without the latest patch: run again with --allow-older-patch"
            raise SafetyRefusal(f"members run different etcd versions ({who}), and {distinct[1]} is not the next "
                                f"step of the path {current} -> {path}", hint=hint)
        continuing = True
    hops = etcd_upgrade_hops(current, target, allow_older_patch=allow_older_patch)
    warning = None
    if allow_older_patch:
        dropped = dropped_patch_hop(current, target)
        if dropped is not None:
            warning = (f"--allow-older-patch: upgrading {current} -> {target.minor_str} without {dropped}, the latest "
                       f"{current.minor_str} patch etcd's upgrade policy asks for first")
    return UpgradeDecision(current, tuple(hops), continuing, warning)


def check_offered(decision: UpgradeDecision, offered: dict[str, str], source: str, *, allow_older_patch: bool) -> None:
    """Refuse (SafetyRefusal) when a hop's version is not offered by the package source."""
    for hop in decision.hops:
        if str(hop.version) in offered:
            continue
        has = ", ".join(offered) or "no etcd version at all"
        ways = [f"add etcd {hop.version} to {source}"]
        if hop.kind == "latest-patch" and not allow_older_patch:
            ways.append(f"pass --allow-older-patch to go from {decision.current} straight to "
                        f"{decision.hops[1].version} (etcd advises against it; the plan will say so)")
        raise SafetyRefusal(f"etcd {hop.version} is not offered by {source}: the path "
                            f"{decision.current} -> {' -> '.join(str(h) for h in decision.hops)} needs it as {hop.why}; "
                            f"the source offers {has}", hint=", or ".join(ways))


def check_auth(decision: UpgradeDecision, auth: AuthState | None) -> None:
    """etcd does not support a rolling 3.4 -> 3.5 upgrade with auth enabled."""
    if not crosses_34_to_35(decision):
        return
    if auth is None or auth.enabled is None:
        raise SafetyRefusal("cannot tell whether etcd auth is enabled, and a rolling 3.4 -> 3.5 upgrade is unsupported "
                            f"with auth on ({auth.detail if auth else 'no answer'})",
                            hint="disable auth (`etcdctl auth disable`) for the upgrade and enable it afterwards")
    if auth.enabled:
        raise SafetyRefusal(f"etcd auth is enabled ({auth.detail}); etcd does not support a rolling 3.4 -> 3.5 "
                            "upgrade with auth on",
                            hint="disable auth (`etcdctl auth disable`) for the upgrade and enable it afterwards")


def check_v2store(cluster: Cluster, pool) -> None:
    """Before leaving 3.5 (versions.yaml v2storeCheckBeforeExit): every member's v2 store, read-only.
    Refuses a member with --enable-v2 set or whose `etcdutl check v2store` fails; a member without
    etcdutl is checked for the flag only, with a warning saying what could not be seen."""
    from kubeforge.facts.etcd_v2store import read_v2store
    from kubeforge.model.versions import etcd_minor

    minor = etcd_minor((3, 5))
    assert minor is not None  # versions.yaml describes 3.5
    source = minor.source("v2storeCheckBeforeExit")
    result = read_v2store(cluster, pool)
    blind = []
    for o in result.outcomes:
        if not o.ok:
            raise CheckFailed(f"cannot check the etcd v2 store on {o.host}: {o.message}")
        state = o.value
        if state.enabled_now or state.clean is False:
            why = "--enable-v2 / ETCD_ENABLE_V2 is set" if state.enabled_now else f"`etcdutl check v2store`: {state.detail}"
            raise SafetyRefusal(
                f"{o.host}: the etcd v2 store must be clean before 3.6 ({why}; source: {source})",
                hint="remove --enable-v2/ETCD_ENABLE_V2, migrate or drop v2 data (etcd's workaround: restart the member "
                     "once with --snapshot-count=1), then run the upgrade again; nothing was changed")
        if state.etcdutl is None:
            blind.append(o.host)
    if blind:
        log.warning("no etcdutl on %s: checked only that --enable-v2/ETCD_ENABLE_V2 is not set now; v2 data written "
                    "while it was on in the past cannot be seen without `etcdutl check v2store` (%s)",
                    ", ".join(sorted(blind)), source)


def crosses_34_to_35(decision: UpgradeDecision) -> bool:
    steps = [decision.current, *(h.version for h in decision.hops)]
    return any(a.minor_key == (3, 4) and b.minor_key == (3, 5) for a, b in pairwise(steps))


def _source_name(cluster: Cluster) -> str:
    archive = archive_for(cluster)
    if archive is not None:
        return f"the release archives at {archive.base}"
    return f"the mirror {cluster.packages.mirror_url}"


def offered_by_mirror(cluster: Cluster, transport, asked: str) -> dict[str, str]:
    """{upstream version: Debian version} of etcd in the mirror, as one member's apt sees it."""
    try:
        offered = read_offered(cluster, transport)
    except CommandFailed as exc:
        raise CheckFailed(f"cannot read which etcd versions {_source_name(cluster)} offers: {exc.message}") from None
    log.info("etcd versions offered by %s (asked on %s): %s", _source_name(cluster), asked,
             ", ".join(f"{k} ({v})" for k, v in offered.items()) or "none")
    return offered


def prepare_archives(cluster: Cluster, pool, decision: UpgradeDecision, *, allow_older_patch: bool) -> dict[str, str]:
    """Fetch and verify every hop's release archive here before any host is touched; a hop whose
    archive does not exist is refused like a version the mirror lacks. Returns host -> arch."""
    from kubeforge.workflows.etcd.sources import member_arches, prepare_etcd_sources

    arches = member_arches(cluster, pool)
    for hop in decision.hops:
        try:
            prepare_etcd_sources(cluster, [hop.version], arches=set(arches.values()))
        except InputError as exc:
            if "HTTP 404" not in exc.message and "no such file" not in exc.message:
                raise  # a checksum that does not match is not a missing version
            ways = [f"add etcd {hop.version} to {_source_name(cluster)}"]
            if hop.kind == "latest-patch" and not allow_older_patch:
                ways.append(f"pass --allow-older-patch to go from {decision.current} straight to {decision.hops[1].version}")
            raise SafetyRefusal(f"etcd {hop.version} is not available from {_source_name(cluster)} ({exc.message}): the "
                                f"path needs it as {hop.why}", hint=", or ".join(ways)) from None
    return arches


def gather_versions(cluster: Cluster, pool, installed: dict[str, str]) -> ClusterVersions:
    """Every member's server and cluster version, asked in parallel over SSH without a raft request;
    an unreachable member is None (and makes the lowest minor unknown)."""
    versions = ClusterVersions(members=read_member_versions(cluster, pool), installed=installed)
    log.info("etcd versions: %s", versions.describe())
    return versions


def crashed_way_out(decision: UpgradeDecision, versions: ClusterVersions,
                    installed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(crashed, stopped): the members to upgrade first because they crash-loop on an entry only the
    first hop applies, and those an interrupted run left stopped with that hop already installed
    (started in the same phase: they help restore the quorum). ([], []) when none crash. Refused
    (exit 4) when members crash that way but the cluster is not a continued upgrade whose other
    members serve on the first hop or wait, stopped, with it installed."""
    crashed = versions.crashing_on_apply()
    if not crashed:
        return [], []
    hop = str(decision.hops[0].version)
    serving, stopped = [], []
    for name, mv in sorted(versions.members.items()):
        if name in crashed or mv is None:
            continue
        if mv.server == hop:
            serving.append(name)
        elif mv.server is None and not mv.active and not mv.apply_panics and installed.get(name) == hop:
            stopped.append(name)
    others = len(versions.members) - len(crashed)
    older = all(installed.get(n) == str(decision.current) for n in crashed)
    if not (decision.continuing and older and serving and len(serving) + len(stopped) == others):
        raise CheckFailed(f"etcd on {', '.join(crashed)} keeps panicking on an entry it cannot apply "
                          f"({versions.describe()}), and the cluster is not an interrupted upgrade to {hop} that "
                          "kubeforge can finish", hint="docs/etcd.md, 'A member crash-loops on an entry it cannot "
                          "apply', says how to get out of this by hand")
    return crashed, stopped


def stopped_mid_lane(decision: UpgradeDecision, versions: ClusterVersions, installed: dict[str, str],
                     status: ClusterStatus) -> list[str]:
    """Members an interrupted run of this upgrade left stopped between installing the first hop and
    restarting on it (installing stops etcd), when they are the only thing wrong: the others serve
    with a quorum and no alarm. [] otherwise, and the health check refuses as usual."""
    if not decision.continuing or status.alarms or not status.has_quorum:
        return []
    hop = str(decision.hops[0].version)
    down = [m.name for m in status.members if not m.healthy]
    for name in down:
        mv = versions.members.get(name)
        if mv is None or mv.active or mv.server is not None or mv.apply_panics or installed.get(name) != hop:
            return []
    return down


def _probe_member(cluster: Cluster, status: ClusterStatus):
    """A healthy follower (the leader only when it is the only member)."""
    healthy = [m.name for m in status.members if m.healthy]
    names = sorted(healthy, key=lambda n: status.leader is not None and n == status.leader.name)
    return next(h for h in cluster.etcd_members if h.name == names[0])


def finish_resumed(cluster: Cluster, pool, want: EtcdVersion) -> Plan:
    """``--resume`` of a run whose members all reached ``want`` (it stopped or failed in its final
    checks): the last hop's phases again under the same step keys, so the journal skips what was
    done and the checks left run; "already at" is for a plain run, not for finishing a journaled one."""
    from kubeforge.plan.etcd.upgrade import finish_phases

    arches = None
    if archive_for(cluster) is not None:
        from kubeforge.workflows.etcd.sources import member_arches, prepare_etcd_sources

        arches = member_arches(cluster, pool)
        prepare_etcd_sources(cluster, [want], arches=set(arches.values()))
    status = gather_status(cluster, pool)
    log.warning("every member already runs %s: resuming the run's remaining checks", want)
    leader = status.leader.name if status.leader else None
    return Plan(workflow_name(want), tuple(finish_phases(cluster, want, leader, arches)))


def plan_upgrade(cluster: Cluster, pool, target: str, snapshot, *, allow_older_patch: bool = False,
                 resume: bool = False) -> Plan:
    require_external(cluster, "upgrade")
    run = unfinished_kubernetes_upgrade(cluster.runs_dir)
    if run:
        raise SafetyRefusal(f"a Kubernetes upgrade is unfinished (run {run}); etcd and Kubernetes upgrades never overlap",
                            hint="finish it with `kubeforge upgrade --resume` first")
    want = parse_etcd(target)
    facts = gather_member_facts(cluster, pool)
    missing = sorted(m for m, f in facts.items() if f is None or f.version is None)
    if missing:
        raise SafetyRefusal(f"etcd is not installed on {', '.join(missing)}", hint="run `kubeforge etcd install` first")
    installed = {m: f.version.split("+")[0] for m, f in facts.items() if f and f.version}
    if resume and set(installed.values()) == {str(want)}:
        return finish_resumed(cluster, pool, want)
    # learnt before any request raft would append: every later request is picked by the lowest
    cluster_versions = gather_versions(cluster, pool, installed)
    decision = decide(installed, want, allow_older_patch=allow_older_patch)
    crashed, stopped = crashed_way_out(decision, cluster_versions, installed)
    if crashed:
        # no quorum to ask about health or auth: the interrupted run checked both before it began
        log.warning("etcd on %s keeps crashing on a raft entry only etcd %s applies: upgrading them first, to %s",
                    ", ".join(crashed), decision.hops[0].version.minor_str, decision.hops[0].version)
        probe_host = next(h for h in cluster.etcd_members if h.name not in crashed)
    else:
        status = gather_status(cluster, pool)
        stopped = stopped_mid_lane(decision, cluster_versions, installed, status)
        if stopped:
            log.warning("etcd on %s is stopped with %s installed: an interrupted run stopped it between its install "
                        "and its restart; its lane starts it", ", ".join(stopped), decision.hops[0].version)
        elif not status.all_healthy:
            bad = ", ".join(m.name for m in status.members if not m.healthy) or "alarms: " + "; ".join(status.alarms)
            raise CheckFailed(f"etcd is not fully healthy ({bad}); an upgrade starts only from a healthy cluster")
        probe_host = _probe_member(cluster, status)
    transport = pool.get(probe_host)
    arches = None
    if archive_for(cluster) is None:
        check_offered(decision, offered_by_mirror(cluster, transport, probe_host.name), _source_name(cluster),
                      allow_older_patch=allow_older_patch)
    else:
        arches = prepare_archives(cluster, pool, decision, allow_older_patch=allow_older_patch)
    if crosses_34_to_35(decision) and not crashed:
        check_auth(decision, read_auth(cluster, transport, probe_host, cluster_versions.lowest_minor))
    if needs_v2store_check(decision.current, want):
        check_v2store(cluster, pool)
    if decision.continuing:
        log.warning("members run %s: continuing the interrupted upgrade to %s",
                    ", ".join(f"{m} {v}" for m, v in sorted(installed.items())), want)
    if decision.warning:
        log.warning("%s", decision.warning)
    leader = None if crashed or status.leader is None else status.leader.name
    phases = upgrade_phases(cluster, [h.version for h in decision.hops], leader, snapshot, warning=decision.warning,
                            arches=arches, crashed=crashed, stopped=stopped)
    return Plan(workflow_name(want), tuple(phases))
