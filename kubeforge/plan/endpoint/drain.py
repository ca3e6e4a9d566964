"""An API server restarted behind kubeforge's haproxy balancers, without a request through the
endpoint meeting it while it is down or not yet ready.

haproxy takes a server out only after ``fall`` failed health checks (3 checks, about 3 s): an API
server that stops and comes back inside that window is never taken out, and a request sent to it
meanwhile fails. So every plan that restarts an API server (``certs renew``, ``certs rotate-ca``,
the SAN re-issue in ``up``, ``kubeadm upgrade apply|node``) wraps the restart with
:func:`behind_balancers`:

1. on every balancer, through haproxy's admin socket, the node's server is set to ``drain``: no new
   connection goes to it, the ones open finish (waited for a few seconds; a watch left open ends when
   the API server stops, and its client reconnects through the endpoint to another server);
2. the restart, and the node's own ``/readyz`` gate;
3. on every balancer, haproxy's health is forced down and the step waits until haproxy's own checks
   (``GET /readyz``, ``rise`` in a row) see the server up again; only then is it set ``ready``;
4. the API answering through the endpoint ends the lane (a rolling phase ends each lane in a gate).

``drain`` rather than ``maint``: haproxy keeps checking a drained server, while one leaving ``maint``
is put UP at once, before any check (measured on haproxy 2.6: "UP 1/3" until three checks fail).

Interrupted runs: the drain step writes a marker on the balancer (``MARKER_DIR/<server>``) before it
drains, the re-enable removes it once the server is ready. ``--resume`` runs the lane's re-enable
step (the journal has it as not done); a fresh run, or a resume whose plan no longer restarts that
node, starts with :func:`ready_drained_phase`, which re-enables every server a marker names. A server
the operator had drained or put in maintenance (no marker) is left as it was.

The steps talk to the socket with the balancer's python3 (in every Debian/Ubuntu server image, as
the preflight probes assume; haproxy's package brings no client for its socket).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeforge.facts.haproxy_drains import MARKER_DIR, balancers, list_marked  # noqa: F401 - read by plans
from kubeforge.model import Cluster, Host
from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep, RunStep
from kubeforge.plan.strategy import serial
from kubeforge.render.endpoint import HAPROXY_ADMIN_SOCKET, HAPROXY_BACKEND
from kubeforge.transport.base import Command

# Open connections are given this long to end once the server drains; what is left (watches) ends
# with the API server itself.
SESSIONS_WAIT_S = 10
# haproxy's checks of a server forced down: `rise 2` at `downinter 1s`, after the API server answers.
# The API server may still be starting, so as long as the API gate waits.
RISE_WAIT_S = 300

# argv: action (drain | ready), socket, backend, server ("*" with ready: every marked one), marker
# directory, seconds to wait. Exit 0 with a line saying what was done; a message and exit 1 otherwise.
ADMIN_PROGRAM = r'''
import os, socket, sys, time
action, sock, backend, server, marks, wait = sys.argv[1:7]
wait = float(wait)
FORCED_MAINT, FORCED_DRAIN = 0x01, 0x08
# srv_op_state: 1 starting (checks passed, in its `slowstart` ramp), 2 running
UP = (1, 2)

def ask(line):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(line.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode().strip()
            out += chunk

def change(line):
    answer = ask(line)
    if answer:
        sys.exit(f"haproxy refused '{line}': {answer}")

def state(name):
    rows = [r.split() for r in ask("show servers state " + backend).splitlines()]
    head = next((r[1:] for r in rows if r and r[0] == "#"), None)
    if head is None:
        sys.exit(f"haproxy has no backend {backend}: " + " ".join(" ".join(r) for r in rows))
    for r in rows:
        if len(r) == len(head) and r[0] != "#" and r[head.index("srv_name")] == name:
            return int(r[head.index("srv_op_state")]), int(r[head.index("srv_admin_state")])
    sys.exit(f"haproxy has no server {backend}/{name}")

def sessions(name):
    rows = [r.split(",") for r in ask("show stat").splitlines()]
    head = rows[0]
    head[0] = head[0].lstrip("# ")
    return next(int(r[head.index("scur")] or 0) for r in rows if r[:2] == [backend, name])

def until(probe, seconds):
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True

def drain(name):
    marker = os.path.join(marks, name)
    _, admin = state(name)
    if admin & (FORCED_MAINT | FORCED_DRAIN) and not os.path.exists(marker):
        print(f"{backend}/{name} was already drained or in maintenance, not by kubeforge: left as it is")
        return
    os.makedirs(marks, mode=0o700, exist_ok=True)
    with open(marker, "w") as f:
        f.write(str(time.time()) + "\n")
        f.flush()
        os.fsync(f.fileno())
    change(f"set server {backend}/{name} state drain")
    ended = until(lambda: sessions(name) == 0, wait)
    left = "" if ended else f"; {sessions(name)} connection(s) still open end when it stops"
    print(f"{backend}/{name} drained: no new connection goes to it{left}")

def ready(name):
    marker = os.path.join(marks, name)
    if not os.path.exists(marker):
        print(f"{backend}/{name}: not drained by kubeforge, nothing to do")
        return
    op, admin = state(name)
    if admin & FORCED_DRAIN:
        # haproxy's own checks must see the restarted server up (`rise` in a row) before it is ready
        change(f"set server {backend}/{name} health down")
        if not until(lambda: state(name)[0] in UP, wait):
            sys.exit(f"{backend}/{name} did not pass haproxy's health check (GET /readyz) within {wait:g}s; "
                     "it stays drained, so no request goes to it: a resumed or new run re-enables it")
        change(f"set server {backend}/{name} state ready")
    os.remove(marker)
    print(f"{backend}/{name} ready: haproxy's checks see it up and it takes requests again")

if action == "drain":
    drain(server)
elif server == "*":
    for name in sorted(os.listdir(marks)) if os.path.isdir(marks) else []:
        ready(name)
else:
    ready(server)
'''


def admin_command(action: str, server: str, wait_s: float, *, socket_path: str = HAPROXY_ADMIN_SOCKET,
                  marker_dir: str = MARKER_DIR, unit: str | None = "haproxy", sudo: bool = True) -> Command:
    """The admin-socket program for ``action`` on ``server``. ``unit`` (systemd's) not running:
    nothing goes through this balancer (drain), and haproxy starts with every server ready (ready: the
    markers go). ``unit=None``, ``sudo=False``: an haproxy run by hand (the unit tests')."""
    args = " ".join(shlex.quote(a) for a in (action, socket_path, HAPROXY_BACKEND, server, marker_dir, f"{wait_s:g}"))
    q_marks = shlex.quote(marker_dir)
    stopped = ("echo 'haproxy is not running here: no request goes through this balancer'" if action == "drain"
               else f"rm -rf {q_marks}; echo 'haproxy is not running here: it starts with every server ready'")
    script = "\n".join([
        f"if ! systemctl is-active --quiet {shlex.quote(unit)}; then {stopped}; exit 0; fi" if unit else ":",
        f"[ -S {shlex.quote(socket_path)} ] || {{ echo 'haproxy runs without its admin socket {socket_path}: "
        "`kubeforge up` renders it' >&2; exit 1; }",
        "command -v python3 >/dev/null || { echo 'python3 is not installed: kubeforge needs it to talk to "
        "haproxy' >&2; exit 127; }",
        f"python3 -c {shlex.quote(ADMIN_PROGRAM)} {args}",
    ])
    return Command(script=script, sudo=sudo, timeout=wait_s + 60,
                   description=f"haproxy: {action} {HAPROXY_BACKEND}/{server}")


def marked(server: str = "*", marker_dir: str = MARKER_DIR) -> Command:
    """Read-only: a marker says kubeforge drained ``server`` (any server for ``*``) on this balancer."""
    path = f"{shlex.quote(marker_dir)}/*" if server == "*" else shlex.quote(f"{marker_dir}/{server}")
    return Command(script=f"! ls {path} >/dev/null 2>&1", sudo=True, timeout=30)


def drain_step(lb: Host, node: Host, key: str = "") -> RunStep:
    return RunStep(lb.name, admin_command("drain", node.name, SESSIONS_WAIT_S),
                   f"Drain {node.name}'s API server on haproxy (no new connection goes to it)",
                   key=f"drain-{node.name}{key}")


def ready_step(lb: Host, node: Host, key: str = "") -> RunStep:
    return RunStep(lb.name, admin_command("ready", node.name, RISE_WAIT_S),
                   f"Re-enable {node.name}'s API server on haproxy once its health check sees it up",
                   unless=marked(node.name), key=f"ready-{node.name}{key}")


def endpoint_gate(cluster: Cluster, node: Host, timeout_s: float, key: str = "") -> GateStep:
    """The API answers through the endpoint, asked from ``node`` (it holds admin.conf)."""
    endpoint = cluster.endpoint
    probe = Command(script=f"{KUBECTL} --server {shlex.quote(endpoint.url)} get --raw /readyz >/dev/null",
                    sudo=True, timeout=30)
    return GateStep(node.name, probe, f"Wait for the API at {endpoint.host_port}",
                    what=f"the API answering through the endpoint {endpoint.host_port} after {node.name}'s restart",
                    timeout_s=timeout_s, interval_s=1.0, key=f"gate-endpoint-{node.name}{key}")


def behind_balancers(cluster: Cluster, node: Host, restart: list, gate_timeout_s: float, *, key: str = "") -> list:
    """``restart`` (the steps that restart ``node``'s API server and wait for it) wrapped so no request
    through kubeforge's haproxy balancers reaches it meanwhile; ``restart`` unchanged without them.
    ``key``: a suffix for the step keys when one lane restarts the same node twice (upgrade hops)."""
    lbs = balancers(cluster)
    if not lbs:
        return list(restart)
    return [*(drain_step(lb, node, key) for lb in lbs), *restart, *(ready_step(lb, node, key) for lb in lbs),
            endpoint_gate(cluster, node, gate_timeout_s, key)]


@dataclass(frozen=True)
class DrainedContext:
    """What ReadyDrainedApiServers reads, for the plans that have no context of their own with a
    ``cluster`` and ``drained_backends`` (up's UpContext has both)."""

    cluster: Cluster
    drained_backends: Mapping[str, Sequence[str]]


class ReadyDrainedApiServers:
    """First in every plan that drains: re-enable what an interrupted run left drained.
    ``ctx.drained_backends``: per balancer, the servers its markers name (read before planning,
    ``list_marked``)."""

    name = "ReadyDrainedApiServers"
    title = "Re-enable API servers an interrupted run left drained on haproxy"
    strategy = serial()

    def plan(self, ctx: Any) -> PhasePlan:
        cluster, drained = ctx.cluster, ctx.drained_backends
        lanes = []
        for lb in balancers(cluster):
            servers = tuple(drained.get(lb.name, ()))
            if servers:
                lanes.append((lb.name, [RunStep(lb.name, admin_command("ready", "*", RISE_WAIT_S),
                                                f"Re-enable {', '.join(servers)} (left drained by an interrupted run)",
                                                unless=marked(), key="ready-drained")]))
        none = ("no API server was left drained on a haproxy balancer" if balancers(cluster)
                else "no haproxy balancer of kubeforge's in front of the API servers")
        return PhasePlan.of(self, lanes, reason_if_empty=none)


def ready_drained_phase(cluster: Cluster, drained: Mapping[str, Sequence[str]]) -> PhasePlan:
    return ReadyDrainedApiServers().plan(DrainedContext(cluster, drained))


def ready_drained_phases(cluster: Cluster, drained: Mapping[str, Sequence[str]]) -> list[PhasePlan]:
    """:func:`ready_drained_phase` where something is drained; nothing otherwise (a plan of
    ``certs renew`` or ``rotate-ca`` shows it only when there is work)."""
    phase = ready_drained_phase(cluster, drained)
    return [] if phase.is_noop else [phase]
