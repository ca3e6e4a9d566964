"""``kubeforge certs check`` and ``certs renew``: the certificates on the hosts beside the store.

check: every host is read in parallel (one sudo script each, kubeforge.pki.hostcerts), the
PEMs parsed here, each certificate given an owner and compared with the store. Read-only.

renew: from the same reading, the store's etcd leaves that expire (or all of them, ``renew_all``)
are re-issued from the store's etcd CA before planning; the plan pushes them one member at a time
with a health gate in between, through the one run engine (journaled, resumable). A store leaf
that is still fresh is never re-issued again, so a resumed or repeated run pushes the same files.
kubeadm's certificates that expire (or all, ``renew_all``) are renewed by kubeadm on each control
plane in turn, with the static pods that read them restarted and gated (kubeforge.plan.certs.renew).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kubeforge.errors import CheckFailed, UsageError
from kubeforge.facts.haproxy_drains import read_drained
from kubeforge.facts.host_certs import probe_command, read_hosts
from kubeforge.model import Cluster
from kubeforge.pki import CertStatus, ensure_pki, expiry_report, leaf_items, load_pki
from kubeforge.pki.bundle import PkiBundle
from kubeforge.pki.ca_rotation import refuse_while_rotating
from kubeforge.pki.ensure import APISERVER_ETCD, HEALTHCHECK
from kubeforge.pki.layout import host_files
from kubeforge.plan.certs.compare import HostReport, compare, store_leaves_expiring
from kubeforge.plan.certs.renew import APISERVER_ETCD_CLIENT, RenewSelection, renew_plan, select
from kubeforge.plan.certs.sans import APISERVER_CRT
from kubeforge.plan.phase import Plan

log = logging.getLogger("kubeforge.certs")
HEALTHCHECK_ITEM, APISERVER_ETCD_ITEM = HEALTHCHECK[0], APISERVER_ETCD[0]


@dataclass(frozen=True)
class CertsCheck:
    store: list[CertStatus]
    hosts: HostReport
    within_days: int
    now: datetime

    @property
    def store_expiring(self) -> list[CertStatus]:
        return [s for s in self.store if s.expires_within(self.within_days)]

    def to_json(self, cluster_name: str) -> dict[str, object]:
        return {
            "cluster": cluster_name,
            "withinDays": self.within_days,
            "certificates": [s.to_json() | {"expiring": s.expires_within(self.within_days)} for s in self.store],
            "hosts": [f.to_json(self.now) for f in self.hosts.findings],
            "differences": self.hosts.differences,
            "unreachable": list(self.hosts.unreachable),
        }


def read_apiserver_sans(cluster: Cluster, pool, hosts: Sequence) -> dict[str, tuple[str, ...]]:
    """The SANs of the API server certificate on each of ``hosts`` that has one (``up`` compares them
    with the inventory's names). Read-only; a host that cannot be read stops the planning (exit 5)."""
    if not hosts:
        return {}
    found, down = read_hosts(cluster, pool, hosts, probe_command((APISERVER_CRT,), ()))
    _require_all_read(down)
    return {h: c.sans for h, certs in found.items() for c in certs if c.path == APISERVER_CRT and not c.error}


def _check_days(within_days: int) -> None:
    if within_days < 0:
        raise UsageError("--within-days must be 0 or more")


def check(cluster: Cluster, pool, *, within_days: int, now: datetime | None = None) -> CertsCheck:
    """Read every host and the store. Unreachable hosts are in the report (the CLI exits 5). Without
    a local store (a cluster set up from another machine) the hosts are still read, compared with
    nothing."""
    _check_days(within_days)
    now = now or datetime.now(UTC)
    bundle = load_pki(cluster) if cluster.pki_dir.is_dir() else None
    if bundle is None:
        log.warning("no local PKI store at %s: the hosts' certificates are compared with nothing", cluster.pki_dir)
    found, down = read_hosts(cluster, pool)
    report = compare(cluster, bundle, found, within_days=within_days, now=now,
                     unreachable=[d.split(":")[0] for d in down])
    for d in down:
        log.error("cannot read the certificates of %s", d)
    return CertsCheck(expiry_report(bundle, now) if bundle is not None else [], report, within_days, now)


def _require_all_read(down: list[str]) -> None:
    if down:
        raise CheckFailed("cannot read the certificates on " + "; ".join(down),
                          hint="bring the machine back (or fix SSH), then run again; nothing was changed",
                          unreachable=tuple(d.split(":")[0] for d in down))


def _to_reissue(cluster: Cluster, bundle: PkiBundle, selection: RenewSelection, report: HostReport, *,
                within_days: int, renew_all: bool, now: datetime) -> frozenset[str]:
    """The store leaves this run pushes (the selected members' server and peer certificates and the
    health-check client; the API server's etcd client when a control plane is selected), and those on
    no host at all: all of them with ``renew_all``, else those that expire. A leaf that is on a host
    this run does not push to is not re-issued (the host's copy would differ until a later run)."""
    pushed = {f"{kind}/{m}" for m in selection.members for kind in ("etcd-server", "etcd-peer")}
    if selection.members:
        pushed.add(HEALTHCHECK_ITEM)
    if selection.apiservers:
        pushed.add(APISERVER_ETCD_ITEM)
    deployed = {f.owner.item for f in report.findings if f.owner.kind == "store"}
    mine = pushed | (set(leaf_items(cluster)) - deployed)
    if renew_all:
        return frozenset(mine)
    return frozenset(mine & set(store_leaves_expiring(bundle, within_days=within_days, now=now)))


def plan_renew(cluster: Cluster, pool, *, within_days: int, renew_all: bool = False,
               hosts: Sequence[str] | None = None, now: datetime | None = None,
               write_store: bool = True, resume: bool = False) -> tuple[Plan, list[str]]:
    """The renewal plan, and the store items re-issued for it (already written to the store).
    ``write_store=False`` (dry run): nothing is re-issued; the plan pushes the store's files as they
    are and the second value names what a real run would re-issue.
    ``resume``: the interrupted run re-issued what it needed before its plan began, so nothing is
    re-issued; a member whose applied-config stamp is not that of the store's files (pushed, not yet
    restarted, when the run stopped) is selected again whatever its expiry."""
    from kubeforge.workflows.etcd.common import context, etcd_pki_files, gather_member_facts, member_etcd_files

    _check_days(within_days)
    now = now or datetime.now(UTC)
    unknown = sorted(set(hosts or ()) - {h.name for h in cluster.hosts})
    if unknown:
        raise UsageError(f"--hosts: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the inventory")
    # a CA rotation under way is refused before any host is asked: mid-rotation a member may be
    # restarting on its new leaves, and the health gate below would misname that as the problem
    refuse_while_rotating(cluster)
    found, down = read_hosts(cluster, pool)
    _require_all_read(down)
    bundle = load_pki(cluster)
    report = compare(cluster, bundle, found, within_days=within_days, now=now)
    # stacked etcd: no member is kubeforge's; its certificates are kubeadm's (renewed on each control plane)
    selection = select(cluster, report, renew_all=renew_all, hosts=hosts)
    reissued: list[str] = []
    ctx = context(cluster)
    if resume:
        selection = _with_unrestarted_members(cluster, pool, bundle, ctx, selection, hosts)
    if selection.members or selection.restarts_etcd_pods:
        require_healthy_etcd(cluster, pool, "a rolling renewal")
    if (selection.members or selection.apiservers) and not resume:
        items = _to_reissue(cluster, bundle, selection, report, within_days=within_days, renew_all=renew_all, now=now)
        if not write_store:
            reissued = sorted(items)
            log.warning("dry run: %s not re-issued in the store; a real run re-issues them first",
                        ", ".join(reissued) or "nothing")
        else:
            result = ensure_pki(cluster, renew=items, now=now)
            reissued = [c.item for c in result.changed]
            for c in result.changed:
                log.info("store: %s", c)
            bundle = result.bundle
    by_name = {h.name: h for h in cluster.etcd_members}
    facts = gather_member_facts(cluster, pool, tuple(by_name[m] for m in selection.members)) if selection.members else {}
    pki = {m: etcd_pki_files(cluster, bundle, by_name[m]) for m in selection.members}
    config = {m: member_etcd_files(ctx, by_name[m], facts[m]) for m in selection.members}
    apiserver = {cp: [f for f in host_files(cluster, bundle, cluster.host(cp)) if f.path.startswith(APISERVER_ETCD_CLIENT)]
                 for cp in selection.apiservers}
    return renew_plan(cluster, selection, pki, config, apiserver, read_drained(cluster, pool)), reissued


def _with_unrestarted_members(cluster: Cluster, pool, bundle: PkiBundle, ctx, selection: RenewSelection,
                              hosts: Sequence[str] | None) -> RenewSelection:
    from kubeforge.plan.etcd.install import config_sha
    from kubeforge.workflows.etcd.common import etcd_pki_files, gather_member_facts, member_etcd_files

    candidates = tuple(m for m in cluster.etcd_members if hosts is None or m.name in hosts)
    facts = gather_member_facts(cluster, pool, candidates) if candidates else {}
    stale = {m.name for m in candidates if (f := facts[m.name]) is not None
             and f.stamp != config_sha([*etcd_pki_files(cluster, bundle, m), *member_etcd_files(ctx, m, f)])}
    if stale - set(selection.members):
        log.info("resuming: %s had renewed files pushed but not restarted on them", ", ".join(sorted(stale)))
    members = tuple(m.name for m in cluster.etcd_members if m.name in stale or m.name in selection.members)
    return replace(selection, members=members)


def refresh_local_admin(cluster: Cluster, pool, plan: Plan) -> bool:
    """After a run that renewed admin.conf on the control planes, fetch it again into the local
    state dir (only when a local copy exists: nothing is created that the operator did not fetch)."""
    from kubeforge.plan.certs.renew import renews_admin_conf
    from kubeforge.workflows.kubeconfig import ADMIN_LOCAL, fetch_kubeconfig

    if not renews_admin_conf(plan) or not (cluster.state_dir / ADMIN_LOCAL).is_file():
        return False
    fetch_kubeconfig(cluster, pool)
    log.info("refreshed the local admin kubeconfig %s", cluster.state_dir / ADMIN_LOCAL)
    return True


def require_healthy_etcd(cluster: Cluster, pool, what: str) -> None:
    """Refuse (exit 4, nothing changed) unless every etcd member is healthy: ``what`` restarts
    members one at a time and must start from a fully healthy cluster."""
    from kubeforge.workflows.etcd.status import gather_status

    sick = [m.name for m in gather_status(cluster, pool).members if not m.healthy]
    if sick:
        raise CheckFailed(f"etcd is not healthy on {', '.join(sick)}; {what} restarts members one at a time "
                          "and starts only from a fully healthy cluster",
                          hint="`kubeforge etcd status` says what is wrong; nothing was changed")
