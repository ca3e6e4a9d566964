"""The Transport for this machine: commands through a local ``bash -s``, files written directly.

``root`` re-bases file paths (put/get) under a directory, so tests and dry rehearsals can write a
host's file tree into a temporary directory. Commands are not re-based: they run on this machine.
"""

from __future__ import annotations

import grp
import hashlib
import io
import os
import pwd
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

from kubeforge.errors import CommandFailed
from kubeforge.transport.cancel import STOP_WAIT_S, CommandStopped, stop_event
from kubeforge.transport.policy import BaseTransport, DeadlineExceeded, FileState, Sink

CHUNK = 1 << 20


def _owner_names(st: os.stat_result) -> tuple[str, str]:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return owner, group


class LocalTransport(BaseTransport):
    def __init__(self, host: str = "local", root: Path | None = None) -> None:
        super().__init__(host)
        self.root = Path(root) if root is not None else None

    def _use_sudo(self) -> bool:
        return os.geteuid() != 0

    def _path(self, path: str) -> Path:
        if self.root is None:
            return Path(path)
        return self.root / path.lstrip("/")

    # --- exec -----------------------------------------------------------------------------------
    def _exec(self, line: str, data: bytes, deadline: float | None, sink: Sink | None,
              stopper=None) -> tuple[int, bytes, bytes]:
        proc = subprocess.Popen(
            shlex.split(line),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a timeout can kill the whole process group
        )
        # three PIPEs with the default bufsize: buffered files, which have read1 (typeshed says IO[bytes] | None)
        stdin = cast(io.BufferedWriter, proc.stdin)
        stdout = cast(io.BufferedReader, proc.stdout)
        stderr = cast(io.BufferedReader, proc.stderr)
        err_chunks: list[bytes] = []
        out_chunks: list[bytes] = []

        def feed() -> None:
            try:
                stdin.write(data)
            except BrokenPipeError:
                pass  # the command exited without reading all its stdin
            finally:
                try:
                    stdin.close()
                except BrokenPipeError:
                    pass

        def drain_err() -> None:
            for chunk in iter(lambda: stderr.read1(CHUNK), b""):
                err_chunks.append(chunk)

        def drain_out() -> None:
            for chunk in iter(lambda: stdout.read1(CHUNK), b""):
                (sink or out_chunks.append)(chunk)

        threads = [threading.Thread(target=f, daemon=True) for f in (feed, drain_err, drain_out)]
        for t in threads:
            t.start()
        # The process group is ours to signal here: ``stopper`` (for a remote host) is not needed.
        stop = stop_event() if stopper is not None else None
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    # With a run that can be interrupted, look at its stop event now and then.
                    proc.wait(timeout=left if stop is None else min(left if left is not None else 0.1, 0.1))
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    if stop is not None and stop.is_set():
                        self._stop(proc, threads)
                        raise CommandStopped(self.host, line) from None
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for t in threads:
                t.join(timeout=2)
            raise DeadlineExceeded(b"".join(err_chunks)) from None
        for t in threads:
            t.join()
        return proc.returncode, b"".join(out_chunks), b"".join(err_chunks)

    @staticmethod
    def _stop(proc: subprocess.Popen, threads: list[threading.Thread]) -> None:
        """SIGTERM to the command's process group, SIGKILL if it is still there after STOP_WAIT_S."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()
        for t in threads:
            t.join(timeout=2)

    # --- files ----------------------------------------------------------------------------------
    def _probe(self, path: str) -> FileState | None:
        p = self._path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        owner, group = _owner_names(st)
        return FileState(h.hexdigest(), st.st_mode & 0o7777, owner, group)

    def _chown(self, fd_or_path, owner: str, group: str) -> None:
        # Only root can give a file away; as another user files stay ours.
        if os.geteuid() != 0:
            return
        try:
            uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            if self.root is not None:
                return  # a host's tree rehearsed under a directory: its users need not exist here
            raise CommandFailed(self.host, f"chown {owner}:{group}", 1, f"no such user or group here: {owner}:{group}") from None
        os.chown(fd_or_path, uid, gid)

    def _set_attrs(self, path: str, mode: int, owner: str, group: str) -> None:
        p = self._path(path)
        self._chown(p, owner, group)
        os.chmod(p, mode)

    def _write(self, path: str, content: bytes, mode: int, owner: str, group: str, secret: bool) -> None:
        p = self._path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kubeforge.", dir=p.parent)  # created 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
                self._chown(f.fileno(), owner, group)
                os.fchmod(f.fileno(), mode)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_from(self, path: str, local: Path, digest: str, mode: int, owner: str, group: str) -> None:
        p = self._path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kubeforge.", dir=p.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as f, local.open("rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
                self._chown(f.fileno(), owner, group)
                os.fchmod(f.fileno(), mode)
            if h.hexdigest() != digest:
                raise CommandFailed(self.host, f"write {path}", 1, f"{local} does not have sha256 {digest}")
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _fetch(self, remote_path: str, sink: Sink, sudo: bool) -> str:
        h = hashlib.sha256()
        try:
            f = open(self._path(remote_path), "rb")
        except OSError as exc:
            raise CommandFailed(self.host, f"read {remote_path}", 1, f"{exc.strerror}: {remote_path}") from None
        with f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                sink(chunk)
        return h.hexdigest()
