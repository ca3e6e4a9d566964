"""The two preflight probes that are not pure reads, and their parsers.

- fsync latency (etcd hosts): WRITES a temporary 1.6 MB file in the filesystem of the etcd data dir
  (the data dir itself if it exists, else its nearest existing parent), appends 8 KiB blocks with an
  fdatasync after each (the pattern of etcd's WAL), and removes the file, also on failure.
- connectivity: LISTENS briefly. On each host a python3 listener binds the role's ports that are
  free, accepts and closes connections, and exits by itself after ``LISTEN_S`` seconds at most (it is
  also stopped as soon as the probe is done). Then every host connects to every other host's SSH
  port and role ports. Ports already held by a service are connected to as they are.

Both need python3 on the host (it is in every Debian/Ubuntu server image); without it the result
says so and preflight warns instead of guessing.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeforge.transport.base import Command

FSYNC_COUNT = 200
LISTEN_S = 20.0
CONNECT_TIMEOUT_S = 2.0

_FSYNC_PY = r"""
import json, os, sys, time
want, count = sys.argv[1], int(sys.argv[2])
d = want
while not os.path.isdir(d):
    d = os.path.dirname(d) or "/"
fn = os.path.join(d, ".kubeforge-fsync-probe-%d" % os.getpid())
lat = []
fd = os.open(fn, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
try:
    block = b"\0" * 8192
    for _ in range(count):
        t = time.perf_counter()
        os.write(fd, block)
        os.fdatasync(fd)
        lat.append((time.perf_counter() - t) * 1000.0)
finally:
    os.close(fd)
    os.unlink(fn)
lat.sort()
print(json.dumps({"dir": d, "count": count, "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)],
                  "max_ms": lat[-1], "mean_ms": sum(lat) / len(lat)}))
"""

_LISTEN_PY = r"""
import json, os, select, socket, sys, time
duration, ports = float(sys.argv[1]), [int(p) for p in sys.argv[2:]]
socks, bound, busy, errors = [], [], [], {}
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("0.0.0.0", p))
        s.listen(1024)  # a control plane's 6443 meets every worker of a fleet at once
        s.setblocking(False)
        socks.append(s)
        bound.append(p)
    except OSError as e:
        s.close()
        (busy.append(p) if e.errno == 98 else errors.__setitem__(str(p), str(e)))
pid = os.fork() if socks else 0
if pid:
    print(json.dumps({"pid": pid, "bound": bound, "busy": busy, "errors": errors}), flush=True)
    os._exit(0)
if not socks:
    print(json.dumps({"pid": None, "bound": bound, "busy": busy, "errors": errors}), flush=True)
    sys.exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
end = time.monotonic() + duration
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    ready, _, _ = select.select(socks, [], [], min(left, 1.0))
    for s in ready:
        try:
            c, _ = s.accept()
            c.close()
        except OSError:
            pass
"""

_CONNECT_PY = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
timeout, targets = float(sys.argv[1]), json.loads(sys.argv[2])
def one(t):
    name, addr, port = t
    try:
        socket.create_connection((addr, port), timeout=timeout).close()
        return {"target": name, "address": addr, "port": port, "ok": True, "error": None}
    except OSError as e:
        return {"target": name, "address": addr, "port": port, "ok": False, "error": str(e) or type(e).__name__}
with ThreadPoolExecutor(max_workers=min(64, max(1, len(targets)))) as ex:
    print(json.dumps(list(ex.map(one, targets))))
"""


def _python(program: str, *args: str) -> str:
    argv = " ".join(shlex.quote(a) for a in args)
    return f"command -v python3 >/dev/null || {{ echo 'python3 is not installed' >&2; exit 127; }}\npython3 -c {shlex.quote(program)} {argv}"


def fsync_command(data_dir: str, count: int = FSYNC_COUNT) -> Command:
    return Command(
        script=_python(_FSYNC_PY, data_dir, str(count)),
        sudo=True,
        timeout=60.0,
        check=False,
        description=f"measure fdatasync latency under {data_dir} (writes and removes a temp file)",
    )


def listen_command(ports: list[int], duration: float = LISTEN_S) -> Command:
    return Command(
        script=_python(_LISTEN_PY, f"{duration:g}", *(str(p) for p in ports)),
        sudo=True,  # ports below 1024 (an LB on 443) need root
        timeout=15.0,
        check=False,
        description="listen briefly on role ports for the connectivity probe",
    )


def stop_listener_command(pid: int) -> Command:
    return Command(argv=["kill", str(pid)], sudo=True, timeout=10.0, check=False, description="stop the probe listener")


def connect_command(targets: list[tuple[str, str, int]], timeout: float = CONNECT_TIMEOUT_S) -> Command:
    return Command(
        script=_python(_CONNECT_PY, f"{timeout:g}", json.dumps([list(t) for t in targets])),
        timeout=timeout * 4 + 20,
        check=False,
        description="connect to peers' ports",
    )


@dataclass(frozen=True)
class FsyncResult:
    directory: str | None = None
    count: int = 0
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Listening:
    pid: int | None = None
    bound: tuple[int, ...] = ()
    busy: tuple[int, ...] = ()  # already held by something: connections test that service
    errors: Mapping[str, str] = field(default_factory=dict)  # port -> why it could not be bound
    problem: str | None = None


@dataclass(frozen=True)
class Connection:
    target: str
    address: str
    port: int
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class ConnectResults:
    connections: tuple[Connection, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class ProbeResults:
    """What preflight's probes found; absent entries mean the probe did not run for that host."""

    fsync: Mapping[str, FsyncResult] = field(default_factory=dict)
    listening: Mapping[str, Listening] = field(default_factory=dict)
    connectivity: Mapping[str, ConnectResults] = field(default_factory=dict)


def _json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def parse_fsync(exit_status: int, stdout: str, stderr: str) -> FsyncResult:
    data = _json(stdout)
    if exit_status != 0 or not isinstance(data, dict):
        why = (stderr.strip().splitlines() or stdout.strip().splitlines() or [f"exit {exit_status}"])[-1]
        return FsyncResult(problem=f"fsync probe failed: {why[:200]}")
    try:
        return FsyncResult(
            directory=str(data["dir"]),
            count=int(data["count"]),
            p99_ms=float(data["p99_ms"]),
            max_ms=float(data["max_ms"]),
            mean_ms=float(data["mean_ms"]),
        )
    except (KeyError, TypeError, ValueError):
        return FsyncResult(problem=f"unreadable fsync probe output: {stdout.strip()[:200]!r}")


def parse_listening(exit_status: int, stdout: str, stderr: str) -> Listening:
    data = _json(stdout)
    if exit_status != 0 or not isinstance(data, dict):
        why = (stderr.strip().splitlines() or [f"exit {exit_status}"])[-1]
        return Listening(problem=f"listener did not start: {why[:200]}")
    try:
        return Listening(
            pid=int(data["pid"]) if data.get("pid") else None,
            bound=tuple(int(p) for p in data.get("bound", ())),
            busy=tuple(int(p) for p in data.get("busy", ())),
            errors={str(k): str(v) for k, v in dict(data.get("errors", {})).items()},
        )
    except (TypeError, ValueError):
        return Listening(problem=f"unreadable listener output: {stdout.strip()[:200]!r}")


def parse_connect(exit_status: int, stdout: str, stderr: str) -> ConnectResults:
    data = _json(stdout)
    if exit_status != 0 or not isinstance(data, list):
        why = (stderr.strip().splitlines() or [f"exit {exit_status}"])[-1]
        return ConnectResults(problem=f"connect probe failed: {why[:200]}")
    out = []
    for item in data:
        try:
            out.append(Connection(str(item["target"]), str(item["address"]), int(item["port"]), bool(item["ok"]), item.get("error")))
        except (KeyError, TypeError, ValueError):
            return ConnectResults(problem=f"unreadable connect probe output: {str(item)[:200]!r}")
    return ConnectResults(connections=tuple(out))
