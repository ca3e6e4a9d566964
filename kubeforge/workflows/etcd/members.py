"""`kubeforge etcd members`: make the cluster's member list match the inventory, one member at a
time, quorum kept throughout (kubeforge.plan.etcd.membership decides and plans).

    plan, change = plan_members(cluster, pool)
"""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import replace
from pathlib import Path

from kubeforge.errors import CheckFailed, KubeforgeError
from kubeforge.execute.durable import replace_file
from kubeforge.facts.etcd import gather_member_facts
from kubeforge.facts.etcdctl import client_url, peer_url
from kubeforge.model import Cluster, Host, Role
from kubeforge.plan.etcd.install import (
    InstallEtcdPackages,
    InstallInput,
    MemberInput,
    PrepareEtcdMembers,
    RecordEtcdConfig,
)
from kubeforge.plan.etcd.membership import (
    ChangeEtcdMembers,
    ListedMember,
    MembershipChange,
    NoteLeavingEtcdMembers,
    RetireLeftEtcdMembers,
    add_member_phase,
    aside_path,
    clear_never_joined,
    decide,
    initial_cluster,
    remove_member_phase,
)
from kubeforge.plan.etcd.source import archive_for
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.render.packages import KUBERNETES_LIST, PIN_PATH, render_packages
from kubeforge.transport.base import Command
from kubeforge.workflows.etcd.common import context, etcd_pki_files, member_etcd_files, require_external
from kubeforge.workflows.etcd.sources import prepare_for_members
from kubeforge.workflows.etcd.status import ClusterStatus, gather_status

log = logging.getLogger("kubeforge.etcd")
WORKFLOW = "etcd members"


def outsider(cluster: Cluster, name: str, address: str) -> Host:
    """A member that is no longer in the inventory, reached at its peer URL's address with the
    cluster's SSH settings (to stop it once it has left)."""
    return Host(name=name or address, address=address, internal_address=address, roles=frozenset({Role.ETCD}),
                ssh=cluster.ssh)


def listed_members(cluster: Cluster, pool, status: ClusterStatus) -> list[ListedMember]:
    by_name = {m.name: m for m in status.members}
    leader_id = next((m.leader_id for m in status.members if m.leader_id and m.leader_id != "0"), None)
    wanted = {peer_url(cluster, h) for h in cluster.etcd_members}
    extra = [m for m in status.member_list if m["peerURLs"] and m["peerURLs"][0] not in wanted]
    health: dict[str, bool] = {m.name: m.healthy for m in status.members}
    if extra:
        hosts = tuple(outsider(cluster, m["name"], ListedMember("", "", tuple(m["peerURLs"])).address) for m in extra)
        for st in gather_status(cluster, pool, members=hosts).members:
            health[st.name] = st.healthy
    out = []
    for m in status.member_list:
        name = m["name"]
        out.append(ListedMember(id=m["id"], name=name, peer_urls=tuple(m["peerURLs"]), client_urls=tuple(m["clientURLs"]),
                                learner=m["isLearner"], healthy=health.get(name or m["peerURLs"][0], False),
                                leader=m["id"] == leader_id))
        if name in by_name and by_name[name].is_learner:
            out[-1] = ListedMember(out[-1].id, name, out[-1].peer_urls, out[-1].client_urls, True, out[-1].healthy,
                                   out[-1].leader)
    return out


def read_listed_members(cluster: Cluster, pool, purpose: str) -> tuple[ListedMember, ...]:
    """etcd's own member list with each member's health (the `etcd status` probes), before planning a
    removal; ``purpose`` completes "... cannot be removed blind". Exit 4 when no member answers."""
    status = gather_status(cluster, pool)
    if not status.member_list:
        down = "; ".join(f"{m.name}: {m.error or 'no answer'}" for m in status.members)
        raise CheckFailed(f"no etcd member answers with the cluster's member list ({down}); {purpose} cannot be "
                          "removed blind; nothing was changed",
                          unreachable=tuple(m.name for m in status.members if not m.reachable))
    return tuple(listed_members(cluster, pool, status))


def leaving_path(cluster: Cluster) -> Path:
    """Members kubeforge is removing, recorded before their `member remove` and dropped once their
    machine's etcd is stopped: a run that ends in between (interrupted, its machine cut off) leaves
    a member the member list no longer names but whose etcd still runs and starts at boot; the next
    run finds it here, as nothing on the cluster names it any more."""
    return cluster.runs_dir.parent / "etcd-leaving.json"


def load_leaving(cluster: Cluster) -> dict[str, dict]:
    """{member id: {"name", "peer_url"}}; {} when none (or the record is unreadable: logged)."""
    path = leaving_path(cluster)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s): members an earlier run removed are not retired again", path, exc)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("peer_url"), str)}


def _save_leaving(cluster: Cluster, entries: dict[str, dict]) -> None:
    path = leaving_path(cluster)
    if not entries:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps(entries, indent=1, sort_keys=True).encode())


def _note_leaving(cluster: Cluster, members: tuple[ListedMember, ...]):
    def note() -> bool:
        entries = load_leaving(cluster)
        entries.update({m.id: {"name": m.name, "peer_url": m.peer_url} for m in members})
        _save_leaving(cluster, entries)
        return False  # nothing changed on any host

    return note


def left_behind(cluster: Cluster, listed: list[ListedMember]) -> tuple[ListedMember, ...]:
    """Recorded leaving members the cluster no longer lists and the inventory does not name."""
    listed_urls = {m.peer_url for m in listed}
    wanted = {peer_url(cluster, h) for h in cluster.etcd_members}
    return tuple(ListedMember(mid, e.get("name", ""), (e["peer_url"],)) for mid, e in sorted(load_leaving(cluster).items())
                 if e["peer_url"] not in listed_urls and e["peer_url"] not in wanted)


def _retire(cluster: Cluster, pool, member: ListedMember):
    host = outsider(cluster, member.name, member.address)
    data = shlex.quote(cluster.etcd.data_dir)
    aside = shlex.quote(aside_path(cluster))

    def retire() -> bool:
        script = (f"systemctl disable --now etcd 2>/dev/null || systemctl stop etcd || true\n"
                  f"if [ -d {data}/member ]; then rm -rf {aside}; mv {data} {aside}; install -d -m 0700 -o etcd -g etcd {data}; fi")
        try:
            pool.get(host).run(Command(script=script, sudo=True, timeout=120, description="retire etcd"))
        except KubeforgeError as exc:
            # It has left the cluster already; a machine that is gone for good is the usual reason.
            log.warning("member %s left the cluster, but its machine could not be cleaned up: %s", host.name, exc)
            return False
        entries = load_leaving(cluster)
        if entries.pop(member.id, None) is not None:
            _save_leaving(cluster, entries)
        return True

    return retire


def plan_members(cluster: Cluster, pool, *, now=None, lost: frozenset[str] | None = None) -> tuple[Plan, MembershipChange]:
    """``lost``: members to replace, as named by the caller (`node replace`); None: those the cluster
    lists as started whose machines hold no data, found here."""
    from kubeforge.pki import ensure_pki

    require_external(cluster, "members")
    status = gather_status(cluster, pool)
    if not status.member_list:
        down = "; ".join(f"{m.name}: {m.error or 'no answer'}" for m in status.members)
        raise CheckFailed(f"no etcd host of the inventory answers with the cluster's member list ({down}); "
                          "membership cannot be changed blind", hint="an inventory member must be up and healthy",
                          unreachable=tuple(m.name for m in status.members if not m.reachable))
    listed = listed_members(cluster, pool, status)
    started = {m.name for m in listed if m.name and m.client_urls and not m.healthy}
    if lost is None and started & {h.name for h in cluster.etcd_members}:
        facts_now = gather_member_facts(cluster, pool, allow_unreachable=True)
        lost = frozenset(n for n in started if (nf := facts_now.get(n)) is not None and not nf.has_data)
    change = decide(cluster, listed, lost or frozenset())
    left = left_behind(cluster, listed)
    retire_phases = []
    if left:
        change = replace(change, retire=left)
        log.warning("%s left the member list in an earlier run that ended before stopping it: stopped now",
                    ", ".join(m.name or m.address for m in left))
        retire_phases.append(RetireLeftEtcdMembers([(m, _retire(cluster, pool, m)) for m in left]).plan(cluster))
    if not (change.add or change.pending or change.remove or change.replace):
        if retire_phases:
            return Plan(WORKFLOW, tuple(retire_phases)), change
        return Plan(WORKFLOW, (ChangeEtcdMembers().plan(cluster),)), change
    healthy_names = {m.name for m in listed if m.healthy}
    removing = {m.peer_url for m in change.remove}
    staying = [h for h in cluster.etcd_members if peer_url(cluster, h) not in removing
               and h not in change.add and h not in change.pending]
    replaced = {h.name for h in change.replace}
    via = next((h for h in staying if h.name in healthy_names), None) or staying[0]
    phases: list[PhasePlan] = list(retire_phases)
    retiring = tuple(m for m in change.remove if m.name not in replaced)
    if retiring:
        # recorded before any member remove: see leaving_path
        phases.append(NoteLeavingEtcdMembers(_note_leaving(cluster, retiring)).plan(cluster))
    if change.remove:
        remaining = list(staying)
        for m in change.remove:
            retire = None if m.name in replaced else _retire(cluster, pool, m)
            phases.append(remove_member_phase(cluster, m, via, tuple(remaining), retire))
        if not change.replace:
            return Plan(WORKFLOW, tuple(phases)), change

    bundle = ensure_pki(cluster, now=now).bundle
    new_hosts = change.pending + change.add + change.replace
    # release archives for the new members, fetched and verified before any of them is changed
    arches = prepare_for_members(cluster, pool, [cluster.etcd.version], hosts=new_hosts)
    from_archive = archive_for(cluster) is not None
    facts = gather_member_facts(cluster, pool, new_hosts)
    ctx = context(cluster)
    def name_of(m: ListedMember) -> str:
        if m.name:
            return m.name
        h = next((x for x in cluster.etcd_members if peer_url(cluster, x) == m.peer_url), None)
        return h.name if h else m.id

    current = [(name_of(m), m.peer_url) for m in listed]
    members_in = []
    members_after = list(staying)
    add_phases = []
    for h in new_hosts:
        if h in change.add:
            current.append((h.name, peer_url(cluster, h)))
        files = etcd_pki_files(cluster, bundle, h) + member_etcd_files(ctx, h, None, state="existing",
                                                                      initial_cluster=initial_cluster(cluster, current))
        sources = () if from_archive else tuple(
            p for p in render_packages(ctx, h) if p.path not in (KUBERNETES_LIST, PIN_PATH))
        member_facts = facts[h.name]
        assert member_facts is not None  # gather_member_facts raises for an unreachable member unless allow_unreachable
        members_in.append(MemberInput(h, sources, tuple(files), member_facts, arch=arches[h.name]))
        members_after.append(h)
        endpoints = [client_url(cluster, x) for x in members_after if x is not h]
        add_phases.append(add_member_phase(cluster, h, via, endpoints, tuple(members_after),
                                           register=h in change.add or h in change.replace))
    # Every new host is enabled at boot only once added; a host not listed yet first loses whatever
    # an earlier attempt left running on it (checked against the member list when the step runs).
    listed_eps = [client_url(cluster, x) for x in staying]
    # A replaced member's machine may still hold the old member's data (`node replace --force` of a
    # live one): cleared the same way, once its old member is gone from the list.
    joining = {h.name: ([clear_never_joined(cluster, h, listed_eps)] if h in change.add or h in change.replace else [])
               for h in new_hosts}
    inp = InstallInput(cluster, tuple(members_in), cluster_exists=True, joining=joining)
    phases += [InstallEtcdPackages().plan(inp), PrepareEtcdMembers().plan(inp), *add_phases, RecordEtcdConfig().plan(inp)]
    return Plan(WORKFLOW, tuple(phases)), change
