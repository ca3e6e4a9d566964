"""`kubeforge etcd restore --from BACKUP`: re-verify the backup here, plan, ask, restore every member.

    plan, inp, record = plan_restore(cluster, pool, "latest")
    record.save(run_log.dir)                     # beside the journal, before the first step

A restore is not repeated by accident: while the last restore run is unfinished, a new one is
refused (``refuse_unfinished``, exit 7) until the operator says either ``--resume`` (the same
backup and stamp from the run's ``restore.json``, so the same step ids: what the journal has as
done is not done again) or ``--start-over``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeforge.backups.retention import MANIFEST_SUFFIX, list_backups
from kubeforge.backups.store import read_verified_snapshot
from kubeforge.errors import InputError, SafetyRefusal, TransportError
from kubeforge.execute.durable import replace_file
from kubeforge.execute.journal import latest_run, run_summary
from kubeforge.facts.etcd import gather_member_facts
from kubeforge.facts.etcd_stacked import StackedMember, apiserver_manifest_hosts, read_stacked_members
from kubeforge.model import Cluster, EtcdTopology
from kubeforge.model.secret import Secret
from kubeforge.pki import backup_crypto as crypto
from kubeforge.plan.etcd import restore_stacked
from kubeforge.plan.etcd.restore import RestoreInput, restore_phases
from kubeforge.plan.phase import Plan

WORKFLOW = "etcd restore"
RECORD = "restore.json"  # in the run's directory, beside its journal


@dataclass(frozen=True)
class RestoreRecord:
    """What a restore run restores, written to its run directory before the run's first step:
    ``--resume`` restores the same backup under the same stamp (the aside dirs, the cluster token:
    so every step has the same id), whatever ``--from latest`` means by then."""

    backup: str
    manifest: str  # absolute path of the backup's manifest
    sha256: str
    stamp: str

    def save(self, run_dir: Path) -> None:
        replace_file(Path(run_dir) / RECORD, json.dumps(asdict(self), indent=1, sort_keys=True).encode())

    @classmethod
    def load(cls, run_dir: Path) -> RestoreRecord:
        path = Path(run_dir) / RECORD
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in ("backup", "manifest", "sha256", "stamp")})
        except FileNotFoundError:
            raise InputError(f"{path}: missing, so run {path.parent.name} cannot be resumed (an older kubeforge "
                             "started it)", hint="restore again from the start with --start-over") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: cannot be read ({exc}), so run {path.parent.name} cannot be resumed",
                             hint="restore again from the start with --start-over") from None


def _is_restore(workflow: str) -> bool:
    return workflow == WORKFLOW or workflow.startswith(WORKFLOW + " ")


def _ended(info: dict[str, Any]) -> str:
    outcome = info["outcome"]
    if outcome is None:
        return "never ended (kubeforge was killed, or the machine it ran on stopped)"
    return {"interrupted": "was interrupted", "failed": "failed"}.get(outcome, f"ended {outcome}")


def refuse_unfinished(cluster: Cluster) -> None:
    """Before a new restore (no host asked yet): refused while the last one is unfinished. Its
    members may already serve the backup's data and take writes, which restoring again would throw
    away; and the operator may not know the run can be continued."""
    last = latest_run(cluster.runs_dir, _is_restore)
    if last is None or last["outcome"] == "succeeded":
        return
    raise SafetyRefusal(
        f"the last etcd restore is unfinished: run {last['run_id']} ({last['workflow']}) {_ended(last)}; a new "
        "restore would repeat every step of it",
        hint="continue it with --resume (what it completed is not done again), or restore again from the start "
             "with --start-over (writes its members took since they started are lost)")


def resumed_restore(cluster: Cluster, run: str) -> tuple[dict[str, Any], RestoreRecord | None]:
    """The restore run ``--resume`` continues (``run``: its id, "" for the latest) and its record;
    the record is None when that run finished: nothing to resume. Only the last restore run is
    resumed: an older one would restore over what a newer one restored."""
    runs = cluster.runs_dir
    last = latest_run(runs, _is_restore)
    if last is None:
        raise InputError(f"no etcd restore run to resume under {runs}", hint="run without --resume to start one")
    if run and run != last["run_id"]:
        info = run_summary(runs / run)
        if not _is_restore(info["workflow"] or ""):
            raise InputError(f"{run}: no etcd restore run of that id under {runs}")
        raise SafetyRefusal(f"run {run} is not the last etcd restore (run {last['run_id']} is): resuming it would "
                            "restore over what the later one restored", hint=f"resume {last['run_id']}, or leave the run id out")
    if last["outcome"] == "succeeded":
        return last, None
    return last, RestoreRecord.load(runs / last["run_id"])


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


def plan_restore(cluster: Cluster, pool, source: str | None, *, directory: Path | None = None,
                 passphrase: Secret | None = None, now: datetime | None = None,
                 resume: RestoreRecord | None = None) -> tuple[Plan, RestoreInput, RestoreRecord]:
    """``source``: see find_manifest; with ``resume`` (the record of the run being continued) it may
    be None, and otherwise must name the run's own backup."""
    if resume is None:
        if source is None:
            raise InputError("--from BACKUP is needed (a manifest, a backup name, or 'latest')")
        manifest_path = find_manifest(cluster, source, directory)
    else:
        manifest_path = Path(resume.manifest)
        chosen = find_manifest(cluster, source, directory) if source is not None else manifest_path
        if chosen.name != manifest_path.name:
            raise SafetyRefusal(f"--from {source} is {chosen}, but the restore being resumed restores {resume.backup} "
                                f"({manifest_path})",
                                hint="resume without --from, or restore the other backup from the start with --start-over")
    key = crypto.load_key_file(cluster.etcd.backup.key_file) if cluster.etcd.backup.key_file else None
    manifest, data = read_verified_snapshot(manifest_path, key=key, passphrase=passphrase)
    sha = manifest.sha256
    if resume is not None and sha != resume.sha256:
        raise SafetyRefusal(f"{manifest_path}: backup {manifest.name} is not the one the resumed restore began with "
                            f"(sha256 {sha[:16]}…, was {resume.sha256[:16]}…)",
                            hint="restore it from the start with --start-over")
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
    stamp = resume.stamp if resume is not None else _stamp(now or datetime.now(UTC))
    inp = RestoreInput(cluster, members, {k: v for k, v in facts.items() if v}, apiserver_manifest_hosts(cluster, pool),
                       data, sha, manifest.name, stamp, stacked)
    record = RestoreRecord(manifest.name, str(manifest_path.absolute()), sha, stamp)
    return Plan(f"{WORKFLOW} {manifest.name}", tuple(restore_phases(inp))), inp, record
