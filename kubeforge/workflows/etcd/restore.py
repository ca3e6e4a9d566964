"""`kubeforge etcd restore --from BACKUP`: re-verify the backup here, plan, ask, restore every member.

    plan, inp = plan_restore(cluster, pool, "latest")
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kubeforge.backups.retention import MANIFEST_SUFFIX, list_backups
from kubeforge.backups.store import read_verified_snapshot
from kubeforge.errors import InputError, SafetyRefusal, TransportError
from kubeforge.facts.etcd import gather_member_facts
from kubeforge.facts.etcd_stacked import StackedMember, apiserver_manifest_hosts, read_stacked_members
from kubeforge.model import Cluster, EtcdTopology
from kubeforge.model.secret import Secret
from kubeforge.pki import backup_crypto as crypto
from kubeforge.plan.etcd import restore_stacked
from kubeforge.plan.etcd.restore import RestoreInput, restore_phases
from kubeforge.plan.phase import Plan

WORKFLOW = "etcd restore"


def find_manifest(cluster: Cluster, source: str, directory: Path | None = None) -> Path:
    """``source``: a manifest path, a backup name in the backup directory, or ``latest``."""
    directory = directory or cluster.etcd.backup.directory
    p = Path(source)
    if p.is_file():
        if p.name.endswith(MANIFEST_SUFFIX):
            return p
        candidate = p.with_name(p.name.split(".db")[0] + MANIFEST_SUFFIX)
        if candidate.is_file():
            return candidate
        raise InputError(f"{p}: not a kubeforge backup manifest (*{MANIFEST_SUFFIX}) and none beside it")
    if source == "latest":
        good = [m for m in list_backups(directory) if m.verified]
        if not good:
            raise InputError(f"{directory}: no verified backup to restore")
        return directory / (good[0].name + MANIFEST_SUFFIX)
    named = directory / (source.removesuffix(MANIFEST_SUFFIX) + MANIFEST_SUFFIX)
    if named.is_file():
        return named
    raise InputError(f"--from {source}: no such backup manifest (looked for {p} and {named})")


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def stacked_members(cluster: Cluster, pool) -> tuple[StackedMember, ...]:
    """Every control plane's etcd member as its static pod manifest states it, checked against the
    inventory (refused, nothing changed, when they disagree or a tool is missing)."""
    result = read_stacked_members(cluster, pool)
    down = [f"{o.host}: {o.message}" for o in result.outcomes if not o.ok]
    if down:
        raise TransportError(", ".join(d.split(":")[0] for d in down), "cannot read the etcd manifests: " + "; ".join(down),
                             hint="every control plane takes part in a stacked restore; nothing was changed")
    found = {o.host: o.value for o in result.outcomes}
    restore_stacked.check_members(cluster, found)
    return tuple(found[cp.name] for cp in cluster.control_planes)


def plan_restore(cluster: Cluster, pool, source: str, *, directory: Path | None = None,
                 passphrase: Secret | None = None, now: datetime | None = None) -> tuple[Plan, RestoreInput]:
    manifest_path = find_manifest(cluster, source, directory)
    key = crypto.load_key_file(cluster.etcd.backup.key_file) if cluster.etcd.backup.key_file else None
    manifest, data = read_verified_snapshot(manifest_path, key=key, passphrase=passphrase)
    sha = manifest.sha256
    members = cluster.etcd_members
    stacked: tuple = ()
    if cluster.etcd.topology is EtcdTopology.STACKED:
        facts = {}
        stacked = stacked_members(cluster, pool)
    else:
        facts = gather_member_facts(cluster, pool)
        missing = [n for n, f in facts.items() if f is not None and f.version is None]
        if missing:
            raise SafetyRefusal(f"etcd is not installed on {', '.join(missing)}", hint="run `kubeforge etcd install` first")
    inp = RestoreInput(cluster, members, {k: v for k, v in facts.items() if v}, apiserver_manifest_hosts(cluster, pool),
                       data, sha, manifest.name, _stamp(now or datetime.now(UTC)), stacked)
    return Plan(f"{WORKFLOW} {manifest.name}", tuple(restore_phases(inp))), inp
