"""The one place transport policy lives: masking, logging, timing, connect retries, typed errors,
atomic and idempotent file writes, checksummed reads.

Implementations (``SshTransport``, ``LocalTransport``) subclass ``BaseTransport`` and provide only
primitives: ``_open`` (connect once), ``_exec`` (run the fixed ``bash -s`` line, feeding it bytes),
``_close``, and optionally faster file primitives (``_probe``, ``_write``, ``_set_attrs``, ``_fetch``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kubeforge.errors import CommandFailed, TransportError
from kubeforge.model.files import file_sha256, private_dir
from kubeforge.transport.base import Command, GetResult, PutResult, RunResult
from kubeforge.transport.cancel import CommandStopped, stop_event
from kubeforge.transport.script import STOP_SCRIPT, TIMEOUT_EXIT, payload, shell_line
from kubeforge.transport.stream import HashingWriter

log = logging.getLogger("kubeforge.transport")

Sink = Callable[[bytes], None]

TAIL_LINES = 20


class CommandTimeout(CommandFailed):
    """A command ran past its timeout; it was killed on the host and its channel closed."""

    def __init__(self, host: str, command: str, timeout: float, stderr_tail: str = "") -> None:
        super().__init__(host, command, TIMEOUT_EXIT, stderr_tail)
        self.timeout = timeout
        self.message = f"[{host}] `{command}` timed out after {timeout:g}s and was stopped"
        self.args = (self.message,)


class NotReached(TransportError):
    """Connecting to the host failed (after the configured retries)."""

    def __init__(self, host: str, message: str, *, attempts: int, hint: str | None = None) -> None:
        super().__init__(host, message, hint=hint)
        self.attempts = attempts


class ConnectionLost(TransportError):
    """The connection broke while in use: the last command may or may not have run (a failure,
    unlike NotReached, where nothing ran)."""


class DeadlineExceeded(Exception):
    """Raised by ``_exec`` when the local deadline passed; the channel/process is already killed."""

    def __init__(self, stderr: bytes = b"") -> None:
        super().__init__("deadline exceeded")
        self.stderr = stderr


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int
    owner: str
    group: str


def tail(data: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(data.rstrip("\n").splitlines()[-lines:])


# Margin between the host-side ``timeout`` and the local deadline: the host should stop the
# command first (it can kill it); the local deadline is the backstop for a host that went silent.
LOCAL_GRACE_S = 7.0


@dataclass(frozen=True)
class _WriteTo:
    write: Callable[[bytes], object]


class BaseTransport:
    """Policy for every transport. Thread-safe: one instance may be used by several threads."""

    host: str

    def __init__(self, host: str, *, connect_retries: int = 0, retry_delay: float = 0.5) -> None:
        self.host = host
        self.connect_retries = connect_retries
        self.retry_delay = retry_delay
        self.connect_attempts = 0  # how many times _open was tried (for reports and tests)
        self._connected = False
        self._connect_lock = threading.Lock()

    # --- primitives implementations provide -------------------------------------------------
    def _open(self) -> None:
        """Connect (called once, under a lock). Raise TransportError (not retried: host keys, auth)
        or OSError/EOFError-like errors (retried)."""

    def _close(self) -> None:
        """Release the connection."""

    def _use_sudo(self) -> bool:
        """Whether a Command with sudo=True needs ``sudo -n`` here (False when already root)."""
        raise NotImplementedError

    def _exec(self, line: str, data: bytes, deadline: float | None, sink: Sink | None,
              stopper: Callable[[], None] | None = None) -> tuple[int, bytes, bytes]:
        """Run ``line`` with ``data`` on stdin. Returns (exit, stdout, stderr); stdout goes to
        ``sink`` instead when given. Raises DeadlineExceeded after killing the command. With a
        ``stopper``, watches ``kubeforge.transport.cancel.stop_event()``: once it is set, stops the
        command on the host (``stopper()`` does what the channel alone cannot) and raises
        CommandStopped."""
        raise NotImplementedError

    # --- connection policy ----------------------------------------------------------------------
    def connect(self) -> None:
        """Connect now (otherwise the first command connects). Retries connect only."""
        if self._connected:
            return
        with self._connect_lock:
            if self._connected:
                return
            last: Exception | None = None
            for attempt in range(self.connect_retries + 1):
                self.connect_attempts += 1
                try:
                    self._open()
                    self._connected = True
                    return
                except TransportError:
                    raise  # a refused host key or failed login does not improve by retrying
                except Exception as exc:  # noqa: BLE001 - every socket-level failure is "not reached"
                    last = exc
                    log.debug("connect attempt %d failed: %s", attempt + 1, exc, extra={"host": self.host})
                    if attempt < self.connect_retries:
                        time.sleep(self.retry_delay * (2**attempt))
            raise NotReached(
                self.host,
                f"could not connect after {self.connect_attempts} attempt(s): {last}",
                attempts=self.connect_attempts,
            )

    def close(self) -> None:
        with self._connect_lock:
            if self._connected:
                self._connected = False
                self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- run ------------------------------------------------------------------------------------
    def run(self, command: Command) -> RunResult:
        return self._run(command)

    def _run(self, command: Command, sink: Sink | None = None, *, internal: bool = False) -> RunResult:
        """``internal``: a command of put/get itself, shown by its description (``write /etc/x``)."""
        self.connect()
        shown = ("sudo " if command.sudo else "") + command.description if internal else command.display()
        stop = stop_event()
        if stop is not None and stop.is_set():
            raise CommandStopped(self.host, shown, started=False)
        sudo = command.sudo and self._use_sudo()
        line = shell_line(sudo=sudo, timeout=command.timeout)
        deadline = None if command.timeout is None else time.monotonic() + command.timeout + LOCAL_GRACE_S
        started = time.monotonic()
        mark = stopper = None
        if stop is not None:  # a run that can be interrupted: mark the command's processes
            mark = secrets.token_hex(8)
            stopper = partial(self._stop_marked, mark, sudo)
        try:
            code, out, err = self._exec(line, payload(command, mark), deadline, sink, stopper)
        except ConnectionLost:
            # This command's fate is unknown and it is not re-run; the next command reconnects.
            self.close()
            raise
        except CommandStopped as exc:
            log.debug("%s stopped after %.3fs: the run was interrupted", shown, time.monotonic() - started,
                      extra={"host": self.host})
            raise CommandStopped(self.host, shown) from exc
        except DeadlineExceeded as exc:
            duration = time.monotonic() - started
            log.debug("%s timed out (%.3fs, channel closed)", shown, duration, extra={"host": self.host})
            raise CommandTimeout(self.host, shown, command.timeout or 0, tail(exc.stderr.decode(errors="replace"))) from None
        duration = time.monotonic() - started
        stdout = out.decode(errors="replace")
        stderr = err.decode(errors="replace")
        log.debug("%s -> exit %d in %.3fs", shown, code, duration, extra={"host": self.host})
        if (
            code == TIMEOUT_EXIT
            and command.timeout is not None
            and duration >= command.timeout * 0.98
        ):
            raise CommandTimeout(self.host, shown, command.timeout, tail(stderr))
        if code != 0 and command.check:
            raise CommandFailed(self.host, shown, code, tail(stderr), stdout_tail=tail(stdout))
        return RunResult(self.host, shown, code, stdout, stderr, duration)

    def _stop_marked(self, mark: str, sudo: bool) -> None:
        """SIGTERM, on the host, to the processes of the command marked ``mark`` (STOP_SCRIPT). Its
        own command is not interruptible; a failure here leaves the host-side timeout to end it."""
        stop = Command(script=STOP_SCRIPT, env={"T": mark}, timeout=20)
        try:
            self._exec(shell_line(sudo=sudo, timeout=20), payload(stop), time.monotonic() + 20 + LOCAL_GRACE_S, None)
        except Exception as exc:  # noqa: BLE001 - best effort: the connection may be gone
            log.debug("could not stop a command on the host: %s", exc, extra={"host": self.host})

    # --- put ------------------------------------------------------------------------------------
    def put(
        self,
        path: str,
        content: bytes,
        *,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secret: bool = False,
    ) -> PutResult:
        if not path.startswith("/"):
            raise ValueError(f"put needs an absolute path, got {path!r}")
        self.connect()
        started = time.monotonic()
        digest = hashlib.sha256(content).hexdigest()
        changed = self._put_unless_same(path, digest, mode, owner, group,
                                        lambda: self._write(path, content, mode, owner, group, secret))
        duration = time.monotonic() - started
        log.debug(
            "put %s (%d bytes, %04o %s:%s%s) %s in %.3fs",
            path, len(content), mode, owner, group, ", secret" if secret else "",
            "changed" if changed else "unchanged", duration, extra={"host": self.host},
        )
        return PutResult(self.host, path, changed, digest, len(content), duration)

    def _put_unless_same(self, path: str, digest: str, mode: int, owner: str, group: str, write) -> bool:
        """Write with ``write()`` unless the host's file has ``digest`` already (then only fix its
        mode and ownership when they differ). True when the content was written."""
        state = self._probe(path)
        if state is not None and state.sha256 == digest:
            if (state.mode, state.owner, state.group) != (mode, owner, group):
                self._set_attrs(path, mode, owner, group)
            return False
        write()
        return True

    # Default file primitives: one exec each, through run(), so they are logged like any command.
    def _probe(self, path: str) -> FileState | None:
        q = shlex.quote(path)
        res = self._run(Command(
            script=f"if [ -f {q} ]; then sha256sum -- {q}; stat -c '%a %U %G' -- {q}; else echo MISSING; fi",
            sudo=True, description=f"checksum {path}",
        ), internal=True)
        lines = res.stdout.split("\n")
        if lines[0].strip() == "MISSING":
            return None
        mode, owner, group = lines[1].split()
        return FileState(lines[0].split()[0], int(mode, 8), owner, group)

    def _set_attrs(self, path: str, mode: int, owner: str, group: str) -> None:
        q = shlex.quote(path)
        self._run(Command(
            script=f"chown {shlex.quote(owner)}:{shlex.quote(group)} -- {q}\nchmod {mode:04o} -- {q}",
            sudo=True, description=f"fix mode/owner of {path}",
        ), internal=True)

    def _write(self, path: str, content: bytes, mode: int, owner: str, group: str, secret: bool) -> None:
        q = shlex.quote(path)
        # mktemp creates the file 0600, so even a secret is never readable by others mid-write;
        # the final mode is set on the temp file before the rename makes it visible.
        script = (
            f"d=$(dirname -- {q}); (umask 022; mkdir -p -- \"$d\")\n"
            f"t=$(mktemp \"$d/.kubeforge.XXXXXX\"); trap 'rm -f -- \"$t\"' EXIT\n"
            f"cat > \"$t\"\n"
            f"chown {shlex.quote(owner)}:{shlex.quote(group)} -- \"$t\"\n"
            f"chmod {mode:04o} -- \"$t\"\n"
            f"mv -f -- \"$t\" {q}"
        )
        self._run(Command(script=script, stdin=content, sudo=True, description=f"write {path}"), internal=True)

    # --- put a local file (streamed) ----------------------------------------------------------
    # Large files (an offline bundle's .debs) go in pieces of this size, so a push holds at most one
    # piece per host in memory, whatever the file's size.
    PUT_CHUNK = 16 << 20

    def put_file(
        self,
        path: str,
        local: Path | str,
        *,
        sha256: str | None = None,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
    ) -> PutResult:
        """``put`` for a file on this machine, read from disk piece by piece: skipped when the host's
        copy has the same sha256 (``sha256``, when the caller already checked the local file, saves
        hashing it again); written atomically and checked on the host before it replaces anything."""
        if not path.startswith("/"):
            raise ValueError(f"put needs an absolute path, got {path!r}")
        self.connect()
        started = time.monotonic()
        local = Path(local)
        size = local.stat().st_size
        digest = sha256 or file_sha256(local)
        changed = self._put_unless_same(path, digest, mode, owner, group,
                                        lambda: self._write_from(path, local, digest, mode, owner, group))
        duration = time.monotonic() - started
        log.debug("put %s from %s (%d bytes, %04o %s:%s) %s in %.3fs", path, local, size, mode, owner, group,
                  "changed" if changed else "unchanged", duration, extra={"host": self.host})
        return PutResult(self.host, path, changed, digest, size, duration)

    def _write_from(self, path: str, local: Path, digest: str, mode: int, owner: str, group: str) -> None:
        """Pieces appended to a temp file beside ``path``; the command carrying the last piece checks
        the sha256 on the host and renames: a file changed under us, or a broken transfer, never
        replaces the old one. The first piece creates the temp file and the last one finishes it, so
        a file of one piece costs one command, as ``put`` does."""
        q = shlex.quote(path)
        size = local.stat().st_size
        # whichever command fails takes the temp file with it
        drop = "trap '[ $? -eq 0 ] || rm -f -- \"$t\"' EXIT"
        finish = (
            # openssl's sha256 costs a fraction of coreutils' CPU where both exist (as in _fetch)
            "if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; else h=sha256sum; fi\n"
            f"[ \"$($h < \"$t\" | cut -d' ' -f1)\" = {shlex.quote(digest)} ] || "
            f"{{ echo \"{path}: the copy does not have sha256 {digest}\" >&2; exit 1; }}\n"
            f"chown {shlex.quote(owner)}:{shlex.quote(group)} -- \"$t\"\n"
            f"chmod {mode:04o} -- \"$t\"\n"
            f"mv -f -- \"$t\" {q}"
        )
        temp: str | None = None
        sent = 0
        try:
            with local.open("rb") as f:
                while True:
                    chunk = f.read(self.PUT_CHUNK)
                    sent += len(chunk)
                    last = sent >= size or not chunk
                    if temp is None:
                        head = (f"d=$(dirname -- {q}); (umask 022; mkdir -p -- \"$d\")\n"
                                "t=$(mktemp \"$d/.kubeforge.XXXXXX\"); echo \"$t\"")
                    else:
                        head = f"t={shlex.quote(temp)}"
                    script = f"{head}\n{drop}\ncat >> \"$t\"" + (f"\n{finish}" if last else "")
                    res = self._run(Command(script=script, stdin=chunk, sudo=True, description=f"write {path}"),
                                    internal=True)
                    if temp is None:
                        temp = res.stdout.strip().splitlines()[0]
                    if last:
                        return
        except BaseException:
            if temp is not None:  # a lost connection leaves it behind; a failed command removed it already
                try:
                    self._run(Command(script=f"rm -f -- {shlex.quote(temp)}", sudo=True, check=False,
                                      description=f"clean up {path}"), internal=True)
                except Exception:  # noqa: BLE001, S110 - the first failure is the one to report
                    pass
            raise

    # --- get ------------------------------------------------------------------------------------
    def get(self, remote_path: str, local_path: str, *, sudo: bool = True) -> GetResult:
        dest = Path(local_path)
        private_dir(dest.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                got = self.stream(remote_path, f.write, sudo=sudo)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return GetResult(self.host, remote_path, str(dest), got.sha256, got.size, got.duration)

    def stream(self, remote_path: str, write: Callable[[bytes], object], *, sudo: bool = True) -> GetResult:
        """Hand the file's bytes to ``write`` as they arrive (from one thread, in order), checked
        against the sha256 the host computed while sending; nothing is written locally here.

        Callers that must not keep the bytes in plain (an encrypted backup) pass an encrypting
        writer. A checksum mismatch raises TransportError after the last byte was handed over.
        """
        self.connect()
        started = time.monotonic()
        writer = HashingWriter(_WriteTo(write))
        try:
            remote_sha = self._fetch(remote_path, writer.feed, sudo)
        finally:
            writer.close()
        local_sha, size = writer.finish()
        if remote_sha != local_sha:
            raise TransportError(
                self.host,
                f"checksum mismatch reading {remote_path}: host has {remote_sha}, received {local_sha}",
            )
        duration = time.monotonic() - started
        log.debug("read %s (%d bytes) in %.3fs", remote_path, size, duration, extra={"host": self.host})
        return GetResult(self.host, remote_path, "", local_sha, size, duration)

    def _fetch(self, remote_path: str, sink: Sink, sudo: bool) -> str:
        """Stream the file to ``sink``; return the sha256 the host computed while sending it."""
        q = shlex.quote(remote_path)
        # The host hashes the very bytes it sends (tee), so the file is read once. openssl's
        # sha256 is ~7x cheaper in CPU than coreutils' where both exist.
        script = (
            f"exec 3< {q}\n"
            "if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; else h=sha256sum; fi\n"
            "tee >($h >&2) <&3\nwait $!"
        )
        res = self._run(Command(script=script, sudo=sudo, timeout=None, description=f"read {remote_path}"), sink, internal=True)
        return res.stderr.strip().split()[0] if res.stderr.strip() else ""
