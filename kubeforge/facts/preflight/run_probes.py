"""Running the preflight probes over transports, bounded in threads and in time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from kubeforge.errors import KubeforgeError
from kubeforge.facts.gather import TransportSource
from kubeforge.facts.preflight import probes
from kubeforge.facts.preflight.requirements import flows, peer_ports
from kubeforge.model import Cluster, Host
from kubeforge.transport.base import Command

T = TypeVar("T")


def _fan(hosts: Sequence[Host], fn: Callable[[Host], T], limit: int) -> dict[str, T]:
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(hosts))), thread_name_prefix="probe") as ex:
        return {h.name: r for h, r in zip(hosts, ex.map(fn, hosts), strict=True)}


def _run(pool: TransportSource, host: Host, command: Command) -> tuple[int, str, str]:
    try:
        r = pool.get(host).run(command)
        return r.exit_status, r.stdout, r.stderr
    except KubeforgeError as exc:
        return -1, "", str(exc)


def run_fsync_probes(
    pool: TransportSource, hosts: Sequence[Host], data_dir: str, *, limit: int = 30
) -> dict[str, probes.FsyncResult]:
    return _fan(hosts, lambda h: probes.parse_fsync(*_run(pool, h, probes.fsync_command(data_dir))), limit)


def run_connectivity_probe(
    pool: TransportSource,
    cluster: Cluster,
    hosts: Sequence[Host],
    *,
    limit: int = 30,
    listen_s: float = probes.LISTEN_S,
    connect_timeout: float = probes.CONNECT_TIMEOUT_S,
    settled: frozenset[str] = frozenset(),
) -> tuple[dict[str, probes.Listening], dict[str, probes.ConnectResults]]:
    """Listen on every host's role ports, connect from every host to every other, stop listening.

    ``hosts`` should be the reachable ones only. Returns what each host listened on, and what each
    host could (not) connect to. Between two ``settled`` hosts (already running members: their
    cluster works over those flows) nothing is probed, so a converged fleet of N hosts costs no
    probe at all rather than N x (N - 1) connections, each a forked sshd on the target.
    """
    pairs = {(a.name, b.name) for a in hosts for b in hosts
             if a.name != b.name and not (a.name in settled and b.name in settled)}
    if not pairs:
        return {}, {}
    role_ports = {h.name: [n.port for n in peer_ports(cluster, h)] for h in hosts}
    listening = _fan(
        [h for h in hosts if role_ports[h.name] and any(dst == h.name for _, dst in pairs)],
        lambda h: probes.parse_listening(*_run(pool, h, probes.listen_command(role_ports[h.name], listen_s))),
        limit,
    )
    try:

        def targets_of(src: Host) -> list[tuple[str, str, int]]:
            out = []
            for dst in hosts:
                if (src.name, dst.name) not in pairs:
                    continue
                # SSH is the one port every host has open before anything is installed
                out.append((dst.name, dst.internal_address, dst.ssh.port))
                lst = listening.get(dst.name)
                if lst is not None and lst.problem is None:
                    testable = {*lst.bound, *lst.busy}
                    out += [(dst.name, dst.internal_address, p) for p in flows(cluster, src, dst) if p in testable]
            return out

        connectivity = _fan(
            [h for h in hosts if any(src == h.name for src, _ in pairs)],
            lambda h: probes.parse_connect(*_run(pool, h, probes.connect_command(targets_of(h), connect_timeout)))
            if len(hosts) > 1
            else probes.ConnectResults(),
            limit,
        )
    finally:
        # the listeners end by themselves after listen_s; stopping them now keeps the window short
        pids = {name: lst.pid for name, lst in listening.items() if lst and lst.pid}
        _fan(
            [h for h in hosts if h.name in pids],
            lambda h: _run(pool, h, probes.stop_listener_command(pids[h.name])),
            limit,
        )
    return listening, connectivity
