"""`kubeforge etcd backup`: snapshot on a healthy member, stream it home, verify, keep N.

Order: status of every member -> pick a healthy follower (the leader only when it is the only
healthy member) -> snapshot save + snapshot status on that member -> stream home, where every
chunk is checked (the member's sha256 of what it sent, etcd's own integrity trailer) and, with
encryption on, encrypted before it is written: the .part file, failed/ and the PKI bundle never
hold a plaintext byte, even when the run is killed halfway -> manifest -> retention. A file that
fails verification goes to failed/ (as stored: encrypted when encryption is on) with a manifest
saying why, and never counts as a backup.
"""

from __future__ import annotations

import contextvars
import json
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.backups.retention import (
    BackupManifest,
    delete_backup,
    list_backups,
    plan_retention,
    write_manifest,
)
from kubeforge.backups.snapshot import (
    IntegrityCheck,
    SnapshotInvalid,
    parse_status,
)
from kubeforge.backups.store import BackupOptions, StoredFile, pki_bundle
from kubeforge.errors import CheckFailed, KubeforgeError, TransportError
from kubeforge.execute.stop import Stop
from kubeforge.facts.etcdctl import REMOTE_WORK_DIR, client_url, etcdctl_line
from kubeforge.model import Cluster, Host
from kubeforge.model.files import private_dir
from kubeforge.model.secret import Secret
from kubeforge.pki import backup_crypto as crypto
from kubeforge.transport.base import Command
from kubeforge.transport.cancel import stop_on
from kubeforge.workflows.etcd.status import ClusterStatus, gather_status


class BackupVerificationFailed(CheckFailed):
    pass


@dataclass(frozen=True)
class BackupResult:
    manifest: BackupManifest
    path: Path  # the snapshot file as stored
    manifest_path: Path
    deleted: list[str]
    member: str
    status: ClusterStatus
    timings: dict


def options_from_cluster(cluster: Cluster, *, directory: Path | None = None, keep: int | None = None,
                         passphrase: Secret | None = None) -> BackupOptions:
    b = cluster.etcd.backup
    key = None
    if b.encryption == "keyfile":
        if b.key_file is None:
            raise KubeforgeError("etcd.backup.encryption is keyfile but no keyFile is set")
        key = crypto.load_key_file(b.key_file)
    if b.encryption == "passphrase" and passphrase is None:
        env = os.environ.get("KUBEFORGE_BACKUP_PASSPHRASE")
        if not env:
            raise KubeforgeError(
                "etcd.backup.encryption is passphrase: set KUBEFORGE_BACKUP_PASSPHRASE or give --passphrase-file"
            )
        passphrase = Secret(env)
    return BackupOptions(
        directory=directory or b.directory,
        keep=b.keep if keep is None else keep,
        max_age_days=b.max_age_days,
        encryption=b.encryption,
        key=key,
        passphrase=passphrase,
        include_pki=b.include_pki,
    )


def choose_member(status: ClusterStatus, order: tuple[Host, ...]) -> Host:
    """A healthy follower in inventory order; the leader only when no follower is healthy."""
    healthy = {m.name for m in status.members if m.healthy}
    if not healthy:
        detail = "; ".join(f"{m.name}: {m.error or 'unhealthy'}" for m in status.members)
        raise CheckFailed(f"no healthy etcd member to take a snapshot from ({detail})",
                          unreachable=tuple(m.name for m in status.members if not m.reachable))
    leader = status.leader.name if status.leader else None
    for h in order:
        if h.name in healthy and h.name != leader:
            return h
    return next(h for h in order if h.name in healthy)


def settled_status(cluster: Cluster, pool, *, clock, sleep=None) -> ClusterStatus:
    """Status of every member, asked again while none is healthy for a few election timeouts.

    Right after a member is lost (the leader, say), the others answer unhealthy until they have
    elected a new leader; a backup taken then must wait for that, not give up.
    """
    import time

    sleep = sleep or time.sleep
    settle_s = max(5.0, 5 * cluster.etcd.election_timeout_ms / 1000)
    status = gather_status(cluster, pool)
    # counted from the first answer: asking an unreachable member can itself take a while
    deadline = clock() + settle_s
    while not any(m.healthy for m in status.members) and clock() < deadline:
        sleep(1.0)
        status = gather_status(cluster, pool)
    return status


def snapshot_script(cluster: Cluster, member: Host, remote_path: str) -> str:
    q = shlex.quote(remote_path)
    ep = [client_url(cluster, member)]
    return "\n".join(
        [
            f"install -d -m 0700 {shlex.quote(REMOTE_WORK_DIR)}",
            f"rm -f {q} {q}.part",
            # a run killed mid-download leaves its snapshot here; an hour is far past any live one
            f"find {shlex.quote(REMOTE_WORK_DIR)} -maxdepth 1 -name {shlex.quote(cluster.name + '-*.db*')} "
            "-mmin +60 -delete 2>/dev/null || true",
            f"{etcdctl_line(cluster, ep, 'snapshot', 'save', remote_path, command_timeout='30m')} >/dev/null",
            f"chmod 0600 {q}",
            "echo @@version",
            # stacked control planes have no etcd binary on the host (it runs from kubeadm's image)
            "{ etcd --version 2>/dev/null || true; } | sed -n 's/^etcd Version: //p'",
        ]
    )


def status_script(remote_path: str) -> str:
    """`snapshot status` of the saved file: hash, revision, keys (reads the whole database)."""
    q = shlex.quote(remote_path)
    return (
        "echo @@status\n"
        f"if command -v etcdutl >/dev/null 2>&1; then etcdutl snapshot status {q} -w json; "
        f"else ETCDCTL_API=3 etcdctl snapshot status {q} -w json; fi"
    )


def _section(text: str, name: str) -> str:
    marker = f"@@{name}"
    if marker not in text:
        return ""
    rest = text.split(marker, 1)[1]
    return rest.split("@@", 1)[0].strip()


@dataclass(frozen=True)
class Download:
    sha256: str  # of the plain snapshot, equal to the member's (checked by the transport)
    size: int  # bytes of the plain snapshot
    stored_sha256: str  # of the file as stored (ciphertext when encrypted)
    problem: str | None  # etcd's integrity trailer does not match; None when it does


def download(transport, remote: str, partial: Path, opts: BackupOptions) -> Download:
    """Stream ``remote`` into ``partial``: every chunk checked (the member's sha256 of what it sent,
    etcd's integrity trailer) and, with encryption on, encrypted before it is written, so no
    plaintext byte reaches the disk. Any failure removes ``partial``; a trailer that does not
    match is returned as ``problem`` (the file is kept, as stored, for failed/)."""
    integrity = IntegrityCheck(partial.name)
    stored = StoredFile(partial, opts)

    def take(chunk: bytes) -> None:
        integrity.feed(chunk)
        stored.write(chunk)

    try:
        got = transport.stream(remote, take, sudo=True)
        stored_sha = stored.finish()
    except BaseException:
        stored.abandon()
        raise
    try:
        integrity.check()
        problem = None
    except SnapshotInvalid as exc:
        problem = str(exc)
    return Download(got.sha256, got.size, stored_sha, problem)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def take_backup(cluster: Cluster, pool, opts: BackupOptions, *, now: datetime | None = None,
                clock=None) -> BackupResult:
    import time

    clock = clock or time.monotonic
    now = now or datetime.now(UTC)
    t0 = clock()
    timings: dict = {}
    status = settled_status(cluster, pool, clock=clock)
    timings["status"] = clock() - t0
    member = choose_member(status, cluster.etcd_members)
    transport = pool.get(member)
    stamp = _stamp(now)
    remote = f"{REMOTE_WORK_DIR}/{cluster.name}-{stamp}.db"
    t1 = clock()
    out = transport.run(Command(script=snapshot_script(cluster, member, remote), sudo=True, timeout=1800,
                                description="etcd snapshot save"))
    timings["snapshot"] = clock() - t1
    etcd_version = _section(out.stdout, "version") or str(cluster.etcd.version)

    directory = opts.directory
    private_dir(directory)
    suffix = ".db.enc" if opts.encryption != "none" else ".db"
    partial = directory / f".{cluster.name}-{stamp}{suffix}.part"
    t2 = clock()
    # `snapshot status` reads the whole file on the member; it runs on a second channel while the
    # file streams home, so the backup costs about save + download. The host hashes the bytes it
    # sends (the transport compares that with what arrived), etcd's trailer is checked on the same
    # stream, and the bytes are encrypted before they are written: nothing is read back from disk.
    with ThreadPoolExecutor(max_workers=1) as ex:
        # the second channel's command watches the same stop as this thread's (a context of its own
        # otherwise: a signal would stop the download and leave the status running to its end)
        status_run = ex.submit(contextvars.copy_context().run, transport.run,
                               Command(script=status_script(remote), sudo=True, timeout=1800, check=False,
                                       description="etcd snapshot status"))
        try:
            got = download(transport, remote, partial, opts)
        except TransportError as exc:
            if "checksum mismatch" in exc.message:  # the bytes that arrived are not the bytes sent
                raise BackupVerificationFailed(f"backup from {member.name} failed verification: {exc.message}") from None
            raise
        finally:
            status_out = status_run.result()
    timings["download"] = clock() - t2
    transport.run(Command(argv=["rm", "-f", remote], sudo=True, check=False, description="remove remote snapshot"))
    try:
        remote_status = parse_status(_section(status_out.stdout, "status"))
    except (SnapshotInvalid, ValueError, KeyError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupVerificationFailed(f"[{member.name}] snapshot status failed on the member: {exc}") from None
    remote_sha = got.sha256
    stored_sha = got.stored_sha256
    name = f"{cluster.name}-{stamp}-rev{remote_status.revision}"

    t3 = clock()
    verification = {"remoteSha256": remote_sha, "downloadSha256": got.sha256, "snapshotStatus": remote_status.to_dict(),
                    "remoteSha256Source": "computed by the member while sending"}
    problem = got.problem
    if problem is None:
        verification["integrityTrailer"] = "ok"
    timings["verify"] = clock() - t3
    encrypted = opts.encryption != "none"
    manifest = BackupManifest(
        name=name, cluster=cluster.name, created=now.astimezone(UTC).isoformat(), member=member.name,
        etcd_version=etcd_version, revision=remote_status.revision, total_keys=remote_status.total_keys,
        snapshot_hash=remote_status.hash, size=got.size, sha256=got.sha256, file=f"{name}{suffix}",
        file_sha256=stored_sha, encrypted=encrypted, encryption=opts.encryption if encrypted else "none",
        verified=problem is None, verification=verification,
    )
    if problem:
        failed_dir = directory / "failed"
        private_dir(failed_dir)
        os.replace(partial, failed_dir / manifest.file)
        write_manifest(failed_dir, replace(manifest, verification={**verification, "problem": problem}))
        raise BackupVerificationFailed(f"backup from {member.name} failed verification ({problem}); kept aside in {failed_dir}")

    t4 = clock()
    final = directory / manifest.file
    os.replace(partial, final)
    if opts.include_pki and cluster.pki_dir.is_dir():
        bundle = directory / (f"{name}.pki.tar.gz" + (".enc" if encrypted else ""))
        pki_bundle(cluster.pki_dir, bundle, opts)
        manifest = replace(manifest, pki_bundle=bundle.name)
    manifest_path = write_manifest(directory, manifest)
    timings["store"] = clock() - t4

    deleted = []
    for old in plan_retention(list_backups(directory), keep=opts.keep, max_age_days=opts.max_age_days, now=now):
        delete_backup(directory, old)
        deleted.append(old.name)
    timings["total"] = clock() - t0
    return BackupResult(manifest=manifest, path=final, manifest_path=manifest_path, deleted=deleted,
                        member=member.name, status=status, timings=timings)


def take_backup_stoppable(cluster: Cluster, pool, opts: BackupOptions) -> BackupResult:
    """``take_backup`` as a command of its own (``etcd backup``; inside a run, the engine's stop
    reaches its commands already, the status channel's included): SIGINT, SIGTERM and SIGHUP stop the snapshot or the download on the member and raise
    CommandStopped (exit 8; the partial file is removed), instead of a KeyboardInterrupt landing
    wherever the main thread is. Landing inside paramiko, it could leave a channel's buffer lock
    held, and the run then hung forever closing that channel (seen in a CI rehearsal)."""
    stop = Stop()
    with stop.handling_signals(), stop_on(stop.halt):
        return take_backup(cluster, pool, opts)


def manifest_json(result: BackupResult) -> str:
    return json.dumps({"manifest": json.loads(result.manifest.to_json()), "path": str(result.path),
                       "deleted": result.deleted, "timings": result.timings}, indent=2)

