"""Two locks so two operators (or two terminals) never change one cluster at once.

- Local: ``fcntl.flock`` on ``<state_dir>/lock``. The kernel drops it when the process dies, so it
  is never stale; it keeps two runs from the same checkout apart.
- Cluster: a file on the first control plane created atomically with bash ``noclobber`` (O_EXCL),
  holding who took it (user@machine, pid, command, since, run id). It protects the cluster from
  operators on other machines; it outlives a killed run, so it can be broken (``--break-lock``).
The engine (kubeforge.execute.engine) takes both, local first, before the run's journal exists,
and releases both at the end, even on failure; the cluster lock only by the run that holds it.

A cluster lock the run could not release (its host lost power or its link at the very end) is
noted in ``<state_dir>/cluster-lock-left.json``: that run has ended, so the next mutating run from
the same state dir removes the lock if it still names that run (``clear_leftover``) -- no
``--break-lock`` needed for one's own leftover, and a lock someone else took since is never touched.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.errors import CommandFailed, KubeforgeError, LockHeld
from kubeforge.execute.durable import replace_file
from kubeforge.model.files import private_dir
from kubeforge.transport.base import Command, Transport

CLUSTER_LOCK_PATH = "/var/lib/kubeforge/lock"
HELD_EXIT = 3  # what the acquire script exits with when someone else holds the lock
LEFTOVER_FILE = "cluster-lock-left.json"

log = logging.getLogger("kubeforge.execute")


@dataclass(frozen=True)
class LockInfo:
    user: str
    machine: str
    pid: int
    command: str
    since: str  # ISO 8601, UTC
    run_id: str

    @classmethod
    def mine(cls, command: str, run_id: str, now: datetime | None = None) -> LockInfo:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry (containers): the uid still identifies the operator
            user = str(os.getuid())
        since = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(user, socket.gethostname(), os.getpid(), command, since, run_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        try:
            d = json.loads(text)
            return cls(str(d["user"]), str(d["machine"]), int(d["pid"]), str(d["command"]), str(d["since"]), str(d["run_id"]))
        except (ValueError, KeyError, TypeError):
            return None

    def is_stale_here(self) -> bool:
        """True when the holder ran on this machine and its process is gone."""
        if self.machine != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return f"{self.user}@{self.machine} (pid {self.pid}, `{self.command}`) since {self.since}, run {self.run_id}"


def _held(where: str, holder: LockInfo | None, raw: str, *, breakable: bool) -> LockHeld:
    who = holder.describe() if holder else (raw.strip()[:200] or "an unknown holder")
    stale = " — stale: that process no longer runs" if holder and holder.is_stale_here() else ""
    hint = (
        "if that run is no longer active, run again with --break-lock"
        if breakable
        else "wait for that run to finish (this lock is released when its process exits)"
    )
    return LockHeld(f"{where} is held by {who}{stale}", hint=hint)


class LocalLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "lock"
        self._fd: int | None = None

    def acquire(self, info: LockInfo) -> None:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise _held(f"the local lock {self.path}", LockInfo.parse(raw), raw, breakable=False) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.to_json().encode() + b"\n", 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Empty the file before unlocking so a reader never sees a released holder as current.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class ClusterLock:
    def __init__(self, transport: Transport, path: str = CLUSTER_LOCK_PATH, *, sudo: bool = True) -> None:
        self.transport = transport
        self.path = path
        self.sudo = sudo
        self._mine: LockInfo | None = None

    def _run(self, script: str, *, stdin: bytes | None = None, description: str, run_id: str = ""):
        return self.transport.run(
            Command(
                script=script,
                sudo=self.sudo,
                env={"LOCK": self.path, "RUN_ID": run_id},
                stdin=stdin,
                check=False,
                timeout=30,
                description=description,
            )
        )

    def _failed(self, res) -> CommandFailed:
        return CommandFailed(self.transport.host, res.command, res.exit_status, res.stderr)

    def holder(self) -> LockInfo | None:
        res = self._run('cat "$LOCK" 2>/dev/null || true', description="read the cluster lock")
        return LockInfo.parse(res.stdout) if res.stdout.strip() else None

    def acquire(self, info: LockInfo) -> None:
        res = self._run(
            'mkdir -p "$(dirname "$LOCK")"\n'
            'if ( set -o noclobber; cat > "$LOCK" ) 2>/dev/null; then chmod 0644 "$LOCK"; exit 0; fi\n'
            'cat "$LOCK" 2>/dev/null || true\n'
            f"exit {HELD_EXIT}\n",
            stdin=info.to_json().encode() + b"\n",
            description="take the cluster lock",
        )
        if res.exit_status == HELD_EXIT:
            where = f"the cluster lock {self.path} on {self.transport.host}"
            raise _held(where, LockInfo.parse(res.stdout), res.stdout, breakable=True)
        if res.exit_status != 0:
            raise self._failed(res)
        self._mine = info

    def release(self) -> None:
        """Remove the lock only if it is still ours (someone may have broken and retaken it)."""
        if self._mine is None:
            return
        self.release_run(self._mine.run_id)
        self._mine = None

    def release_run(self, run_id: str) -> None:
        """Remove the lock if it names ``run_id``; leave anyone else's."""
        res = self._run(
            'if grep -qF "\\"run_id\\": \\"$RUN_ID\\"" "$LOCK" 2>/dev/null; then rm -f "$LOCK"; fi',
            description="release the cluster lock",
            run_id=run_id,
        )
        if res.exit_status != 0:
            raise self._failed(res)

    def break_(self) -> LockInfo | None:
        """Remove the lock whoever holds it; returns who held it."""
        previous = self.holder()
        res = self._run('rm -f "$LOCK"', description="break the cluster lock")
        if res.exit_status != 0:
            raise self._failed(res)
        return previous


def note_leftover(state_dir: Path, lock: ClusterLock, run_id: str) -> None:
    """Record that run ``run_id`` ended without releasing ``lock`` (no secret in it)."""
    record = {"host": lock.transport.host, "path": lock.path, "sudo": lock.sudo, "run_id": run_id}
    replace_file(private_dir(state_dir) / LEFTOVER_FILE, (json.dumps(record, sort_keys=True) + "\n").encode())


def clear_leftover(state_dir: Path, pool) -> None:
    """Remove the cluster lock an ended run of this state dir could not release, if it still names
    that run (a lock taken since, by anyone, stays). Never fatal: when its host still cannot be
    reached the note stays for the next run, and taking the lock then says who holds it."""
    note = Path(state_dir) / LEFTOVER_FILE
    try:
        record = json.loads(note.read_text())
        host, path, run_id, sudo = str(record["host"]), str(record["path"]), str(record["run_id"]), bool(record["sudo"])
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError):
        note.unlink(missing_ok=True)  # unreadable: the lock, if any, names its holder for --break-lock
        return
    try:
        ClusterLock(pool.get(host), path, sudo=sudo).release_run(run_id)
    except (KubeforgeError, OSError, KeyError) as exc:
        log.warning("the cluster lock %s on %s that run %s left is still there (%s)", path, host, run_id, exc)
        return
    note.unlink(missing_ok=True)
    log.info("removed the cluster lock %s on %s that run %s (ended) could not release", path, host, run_id)
