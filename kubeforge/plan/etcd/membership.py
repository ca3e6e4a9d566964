"""Membership as the inventory changes: decide (pure), refuse unsafe changes, plan one member at a time.

Adding a host: install and prepare it like any member (its env says initial-cluster-state=existing
and names the current members plus itself), `member add --learner` on a healthy member, start it,
promote it once it has caught up (etcd refuses to promote a learner that lags: the gate retries),
then a health gate. Removing one: leadership moved away first if it leads, `member remove`, then its
etcd stopped and disabled and its data dir moved aside. Refused before anything is touched: adds and
removals in one change, a cluster without quorum now, or any step that would leave fewer healthy
voting members than a quorum.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcdctl import client_url, etcdctl_line, peer_url
from kubeforge.model import Cluster, Host
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.install import (
    GATE_TIMEOUT_S,
    InstallEtcdPackages,
    PrepareEtcdMembers,
    RecordEtcdConfig,
    enable_step,
    health_gate,
)
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep, LocalStep, RunStep, Step
from kubeforge.plan.strategy import parallel, serial
from kubeforge.transport.base import Command


@dataclass(frozen=True)
class ListedMember:
    """One entry of the cluster's own member list."""

    id: str  # hex
    name: str  # "" for a member added but never started
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...] = ()
    learner: bool = False
    healthy: bool = False
    leader: bool = False

    @property
    def peer_url(self) -> str:
        return self.peer_urls[0] if self.peer_urls else ""

    @property
    def address(self) -> str:
        u = self.peer_url.split("://", 1)[-1].rsplit(":", 1)[0]
        return u.strip("[]")


@dataclass(frozen=True)
class MembershipChange:
    add: tuple[Host, ...] = ()  # inventory order
    pending: tuple[Host, ...] = ()  # added earlier (listed, never started): only start + promote
    remove: tuple[ListedMember, ...] = ()  # leader last
    replace: tuple[Host, ...] = ()  # members that lost their data: removed, then added again
    # removed from the member list by an earlier run that ended before it stopped them: their etcd
    # is still to be stopped, disabled and moved aside
    retire: tuple[ListedMember, ...] = ()

    @property
    def is_noop(self) -> bool:
        return not (self.add or self.pending or self.remove or self.replace or self.retire)


def quorum(n: int) -> int:
    """How many of ``n`` voting members must be healthy for etcd to commit anything."""
    return n // 2 + 1


def decide(cluster: Cluster, listed: Sequence[ListedMember], lost: frozenset[str] = frozenset()) -> MembershipChange:
    """What to add and remove so the cluster's members become the inventory's; refuses unsafe
    changes (SafetyRefusal) without touching anything. ``lost``: inventory members the cluster lists
    as started whose machines hold no data any more (a re-imaged disk): they are replaced."""
    if lost:
        return _replace(cluster, listed, lost)
    wanted = cluster.etcd_members
    by_url = {m.peer_url: m for m in listed}
    add, pending = [], []
    for h in wanted:
        m = by_url.get(peer_url(cluster, h))
        if m is None:
            add.append(h)
        elif not m.name or m.learner:
            # listed but never started, or a learner never promoted (an interrupted add)
            pending.append(h)
        elif m.name != h.name:
            raise SafetyRefusal(f"{h.name}: its peer URL {peer_url(cluster, h)} belongs to member {m.name!r}")
    wanted_urls = {peer_url(cluster, h) for h in wanted}
    remove = [m for m in listed if m.peer_url not in wanted_urls]
    if (add or pending) and remove:
        raise SafetyRefusal(
            f"the inventory adds {', '.join(h.name for h in add + pending)} and removes "
            f"{', '.join(m.name or m.peer_url for m in remove)} at once",
            hint="change one thing at a time: remove first (run), then add (run again)",
        )
    voters = [m for m in listed if not m.learner]
    healthy = [m for m in voters if m.healthy]
    if listed and len(healthy) < quorum(len(voters)):
        raise SafetyRefusal(f"etcd has no quorum now ({len(healthy)} of {len(voters)} voting members healthy); "
                            "membership cannot change", hint="bring members back first (kubeforge etcd status)")
    remove.sort(key=lambda m: (m.healthy, m.leader))  # dead members first, the leader last
    n_voters, n_healthy = len(voters), len(healthy)
    for m in remove:
        n_voters -= 0 if m.learner else 1
        n_healthy -= 1 if (m.healthy and not m.learner) else 0
        if n_voters == 0 or n_healthy < quorum(n_voters):
            raise SafetyRefusal(
                f"removing {m.name or m.peer_url} would leave {n_healthy} healthy of {n_voters} voting members, "
                f"below quorum ({quorum(n_voters) if n_voters else 1}); nothing was changed",
                hint="bring the unhealthy members back (or remove them first), then run again",
            )
    for _ in add + pending:
        n_voters += 1
        n_healthy += 1
    return MembershipChange(tuple(add), tuple(pending), tuple(remove))


def _replace(cluster: Cluster, listed: Sequence[ListedMember], lost: frozenset[str]) -> MembershipChange:
    wanted_urls = {peer_url(cluster, h) for h in cluster.etcd_members}
    listed_urls = {m.peer_url for m in listed}
    if wanted_urls != listed_urls:
        raise SafetyRefusal(f"{', '.join(sorted(lost))} lost their data while the inventory also changes membership",
                            hint="put the inventory's etcd hosts back as the cluster has them, replace first, then change")
    gone = [m for m in listed if m.name in lost]
    voters = [m for m in listed if not m.learner]
    healthy = sum(1 for m in voters if m.healthy and m.name not in lost)
    remaining = len(voters) - sum(1 for m in gone if not m.learner)
    if healthy < quorum(len(voters)):
        raise SafetyRefusal(f"etcd has no quorum now ({healthy} of {len(voters)} voting members healthy): members "
                            "cannot be replaced", hint="restore from a backup instead (kubeforge etcd restore)")
    if remaining == 0 or healthy < quorum(remaining):
        raise SafetyRefusal(f"replacing {', '.join(sorted(lost))} needs {quorum(max(remaining, 1))} healthy members "
                            f"of the {remaining} that stay; {healthy} are healthy", hint="restore from a backup instead")
    return MembershipChange(remove=tuple(gone), replace=tuple(h for h in cluster.etcd_members if h.name in lost))


def initial_cluster(cluster: Cluster, members: Sequence[tuple[str, str]]) -> str:
    """ETCD_INITIAL_CLUSTER of a joining member from ``(name, peer URL)`` pairs: in the inventory's
    order (members it does not name after, as given), never in the member list's order (by member
    id), so a re-run that finds earlier members already added renders the same bytes."""
    order = {peer_url(cluster, h): i for i, h in enumerate(cluster.etcd_members)}
    ranked = sorted(enumerate(members), key=lambda im: (order.get(im[1][1], len(order)), im[0]))
    return ",".join(f"{name}={url}" for _, (name, url) in ranked)


def _retrying(line: str, tries: int = 60) -> str:
    """etcd refuses membership changes (strict reconfig check) until every member has been connected
    for a few seconds, e.g. right after a promotion: retry on that answer only."""
    return "\n".join(
        [
            f"for i in $(seq 1 {tries}); do",
            f"  if out=$({line} 2>&1); then printf '%s\\n' \"$out\"; exit 0; fi",
            '  case "$out" in *"unhealthy cluster"*) sleep 1 ;; *) printf \'%s\\n\' "$out" >&2; exit 1 ;; esac',
            "done",
            "printf '%s\\n' \"$out\" >&2; exit 1",
        ]
    )


def _find_member_script(url: str) -> str:
    # member list (3.4+ simple format): ID, status, name, peer URLs, client URLs, is learner
    return f"awk -F', ' -v u={shlex.quote(url)} '$4 == u'"


def remove_by_peer_url(cluster: Cluster, endpoints: list[str], url: str) -> str:
    """A script that removes the member listed with peer URL ``url``, if any (exit 0 when none is):
    found by URL, never by name, since a member added but never started has no name yet."""
    listed = etcdctl_line(cluster, endpoints, "member", "list")
    find = (f"set -o pipefail\nid=$({listed} | {_find_member_script(url)} | awk -F', ' '{{print $1}}') || exit 1\n"
            f"[ -n \"$id\" ] || {{ echo 'no member with peer URL {url}: nothing to remove'; exit 0; }}\n")
    return find + _retrying(etcdctl_line(cluster, endpoints, "member", "remove", "ID")).replace(
        "member remove ID", 'member remove "$id"')


def aside_path(cluster: Cluster) -> str:
    """Where the data dir of a member that left (or never joined) is moved, never deleted."""
    return cluster.etcd.data_dir.rstrip("/") + ".kubeforge-removed"


def clear_never_joined(cluster: Cluster, host: Host, endpoints: list[str]) -> RunStep:
    """For a host about to be added: an etcd an earlier attempt left on it (enabled, running, or a
    data dir from a start against a cluster that did not list it — e.g. booted after a power loss)
    is stopped and disabled and its data dir moved aside, so the member starts clean once added.
    Only when the cluster's member list, read in full, does not name its peer URL: a member that
    joined is never touched. Nothing to clear (the usual case): unchanged."""
    url = peer_url(cluster, host)
    data = shlex.quote(cluster.etcd.data_dir)
    aside = shlex.quote(aside_path(cluster))
    script = "\n".join(
        [
            f"out=$({etcdctl_line(cluster, endpoints, 'member', 'list')}) || "
            f"{{ echo 'cannot read the member list; {host.name} left as it is' >&2; exit 1; }}",
            f"if printf '%s\\n' \"$out\" | {_find_member_script(url)} | grep . >/dev/null; then",
            f"  echo '{host.name} is listed as a member: its etcd is kept'; exit 0",
            "fi",
            "systemctl disable --now etcd >/dev/null 2>&1 || systemctl stop etcd || true",
            f"if [ -d {data}/member ]; then rm -rf {aside}; mv {data} {aside}; install -d -m 0700 -o etcd -g etcd {data}; fi",
        ]
    )
    nothing = (f"! systemctl is-active --quiet etcd && ! systemctl is-enabled --quiet etcd && "
               f"[ ! -d {data}/member ]")
    return RunStep(host.name, Command(script=script, sudo=True, timeout=120,
                                      description=f"clear an etcd that never joined on {host.name}"),
                   "Clear an etcd that never joined", unless=Command(script=nothing, sudo=True, timeout=30))


class AddEtcdMember:
    """One new member: added as a learner (``register``: unless an earlier run did), enabled and
    started, promoted once caught up, then the cluster's health with it."""

    name = "AddEtcdMember"
    title = "Add an etcd member"
    strategy = serial()

    def __init__(self, host: Host, via: Host, endpoints: list[str], members_after: tuple[Host, ...], *,
                 register: bool) -> None:
        self.host, self.via, self.endpoints, self.members_after, self.register = host, via, endpoints, members_after, register
        self.instance = host.name

    def title_for(self, cluster: Cluster) -> str:
        return f"Add etcd member {self.host.name}"

    def plan(self, cluster: Cluster) -> PhasePlan:
        host, via, endpoints, members_after = self.host, self.via, self.endpoints, self.members_after
        url = peer_url(cluster, host)
        # awk reads the whole list: a reader that quits early (grep -q) can kill etcdctl with SIGPIPE,
        # and under pipefail that failure would read as "not listed"
        listed = (f"{etcdctl_line(cluster, endpoints, 'member', 'list')} | "
                  f"awk -F', ' -v u={shlex.quote(url)} '$4 == u {{f=1}} END {{exit !f}}'")
        lanes: list[tuple[str, list[Step]]] = []
        if self.register:
            add = Command(script=_retrying(etcdctl_line(cluster, endpoints, "member", "add", host.name, f"--peer-urls={url}",
                                                        "--learner")),
                          sudo=True, timeout=120, description=f"member add {host.name} as a learner")
            lanes.append((via.name, [RunStep(via.name, add, f"Add {host.name} as a learner",
                                             unless=Command(script=listed, sudo=True, timeout=60))]))
        # The gate first makes sure the learner's etcd runs: after a power loss of the new member between
        # "Start etcd" (done, journaled) and its promotion, a resumed run skips the start step, and a
        # learner that never starts never catches up. Starting an active unit is a no-op.
        promote = "\n".join(
            [
                "systemctl is-active --quiet etcd || systemctl start --no-block etcd",
                f"line=$({etcdctl_line(cluster, endpoints, 'member', 'list')} | {_find_member_script(url)})",
                f"[ -n \"$line\" ] || {{ echo '{host.name} is not a member' >&2; exit 1; }}",
                'case "$line" in',
                f"  *', true') {etcdctl_line(cluster, endpoints, 'member', 'promote', 'MEMBER_ID')} ;;".replace(
                    "MEMBER_ID", '"${line%%,*}"'),
                "esac",
            ]
        )
        lanes.append((host.name, [
            enable_step(host),  # only now: the cluster lists it, so a start at boot joins
            RunStep(host.name, cmd.systemctl("start", "--no-block", "etcd"), "Start etcd (joining the running cluster)",
                    unless=cmd.is_active()),
            GateStep(host.name, Command(script=promote, sudo=True, timeout=60), f"Promote {host.name} once caught up",
                     what=f"learner {host.name} in sync with the leader and promoted", timeout_s=GATE_TIMEOUT_S,
                     interval_s=1.0),
            health_gate(cluster, host, members_after, key=f"gate-after-add-{host.name}",
                        title=f"Wait for etcd healthy with {host.name}"),
        ]))
        return PhasePlan.of(self, lanes, title=self.title_for(cluster))


def add_member_phase(cluster: Cluster, host: Host, via: Host, endpoints: list[str], members_after: tuple[Host, ...],
                     *, register: bool) -> PhasePlan:
    return AddEtcdMember(host, via, endpoints, members_after, register=register).plan(cluster)


class RemoveEtcdMember:
    """One member out of the list (leadership moved away first when it leads), then the health of
    those that stay; ``retire``: then stop and disable etcd on its machine (None: the machine goes)."""

    name = "RemoveEtcdMember"
    title = "Remove an etcd member"
    strategy = serial()

    def __init__(self, member: ListedMember | None, via: Host | None, remaining: tuple[Host, ...],
                 retire: Callable[[], object] | None, *, instance: str = "") -> None:
        self.member, self.via, self.remaining, self.retire = member, via, remaining, retire
        self.instance = instance or (member.name or member.peer_url if member else "")

    @classmethod
    def gone(cls, name: str) -> RemoveEtcdMember:
        """The member of ``name`` that etcd no longer lists (a resumed run): nothing to remove."""
        return cls(None, None, (), None, instance=name)

    def title_for(self, cluster: Cluster) -> str:
        return f"Remove etcd member {self.instance}"

    def plan(self, cluster: Cluster) -> PhasePlan:
        member, via, remaining, retire = self.member, self.via, self.remaining, self.retire
        if member is None or via is None:
            return PhasePlan.of(self, (), title=self.title_for(cluster), reason_if_empty=f"etcd no longer lists {self.instance}")
        endpoints = [client_url(cluster, h) for h in remaining]
        name = member.name or member.peer_url
        ep = member.client_urls[0] if member.client_urls else ""
        lines = []
        if ep and member.healthy:
            # A leader that is removed steps down only after the change commits; moving leadership first
            # keeps writes flowing without an election.
            lines += [
                f"if {etcdctl_line(cluster, [ep], 'endpoint', 'status')} 2>/dev/null | awk -F', ' '$5 == \"true\" {{f=1}} END {{exit !f}}'; then",
                f"  to=$({etcdctl_line(cluster, [endpoints[0]], 'endpoint', 'status')} | awk -F', ' '{{print $2}}')",
                f"  {etcdctl_line(cluster, [ep], 'move-leader', 'TARGET_ID')} >/dev/null".replace("TARGET_ID", '"$to"'),
                "fi",
            ]
        lines.append(_retrying(etcdctl_line(cluster, endpoints, "member", "remove", member.id)))
        # Not listed any more: decided only from a member list that was read in full.
        unless = Command(script=f"out=$({etcdctl_line(cluster, endpoints, 'member', 'list')})\n"
                                f"printf '%s\\n' \"$out\" | awk -F', ' -v id={member.id} '$1 == id {{f=1}} END {{exit f}}'",
                         sudo=True, timeout=60)
        steps = [RunStep(via.name, Command(script="\n".join(lines), sudo=True, timeout=180,
                                           description=f"member remove {name}"), f"Remove {name} from the member list",
                         unless=unless),
                 health_gate(cluster, via, remaining, key=f"gate-after-remove-{member.id}",
                             title=f"Wait for etcd healthy without {name}")]
        lanes: list = [(via.name, steps)]
        if retire is not None:
            lanes.append(("local", [LocalStep(f"Stop and disable etcd on {name} ({member.address})", retire,
                                              key=f"retire-{member.id}", reaches=name)]))
        return PhasePlan.of(self, lanes, title=self.title_for(cluster))


def remove_member_phase(cluster: Cluster, member: ListedMember, via: Host, remaining: tuple[Host, ...],
                        retire: Callable[[], object] | None) -> PhasePlan:
    return RemoveEtcdMember(member, via, remaining, retire).plan(cluster)


class RetireLeftEtcdMembers:
    """Members an earlier run removed from the list but ended before stopping: stopped now."""

    name = "RetireLeftEtcdMembers"
    title = "Stop etcd on members an earlier run removed"
    strategy = serial()

    def __init__(self, left: Sequence[tuple[ListedMember, Callable[[], object]]]) -> None:
        self.left = left

    def plan(self, cluster: Cluster) -> PhasePlan:
        return PhasePlan.of(self, [("local", [LocalStep(f"Stop and disable etcd on {m.name or m.address} ({m.address})", retire,
                                                        key=f"retire-{m.id}", reaches=m.name or m.address)
                                              for m, retire in self.left])])


class ChangeEtcdMembers:
    """Shown alone when the member list already is the inventory's."""

    name = "ChangeEtcdMembers"
    title = "Change etcd members"
    strategy = parallel()

    def plan(self, cluster: Cluster) -> PhasePlan:
        return PhasePlan.noop(self, "the cluster's members are the inventory's")


class NoteLeavingEtcdMembers:
    """Recorded before any member remove (see workflows.etcd.members.leaving_path)."""

    name = "NoteLeavingEtcdMembers"
    title = "Record the members being removed"
    strategy = serial()

    def __init__(self, note: Callable[[], object]) -> None:
        self.note = note

    def plan(self, cluster: Cluster) -> PhasePlan:
        return PhasePlan.of(self, [("local", [LocalStep("Record the members being removed", self.note, key="note-leaving")])])


# `etcd members` (and `node replace` of a member), in order: members an earlier run left, the note of
# those leaving, each removal, then the new members installed, prepared, added one by one, recorded.
PHASES = (RetireLeftEtcdMembers, ChangeEtcdMembers, NoteLeavingEtcdMembers, RemoveEtcdMember, InstallEtcdPackages,
          PrepareEtcdMembers, AddEtcdMember, RecordEtcdConfig)
