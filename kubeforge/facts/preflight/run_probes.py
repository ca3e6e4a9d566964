"""Running the preflight probes over transports, bounded in threads and in time."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def connect_targets(
    cluster: Cluster,
    hosts: Sequence[Host],
    listening: Mapping[str, probes.Listening],
    settled: frozenset[str] = frozenset(),
) -> dict[str, list[tuple[str, str, int]]]:
    """What each host connects to: the role ports a running cluster uses between the two (``flows``)
    that the peer could listen on. SSH only where a needed flow could not be tested (no listener
    there): it is open on every host before anything is installed, so it still tells routing and
    firewall trouble apart. Pairs without a flow (worker to worker) and pairs of ``settled`` hosts
    (already running members) are not probed: N hosts cost O(N x control planes) connections, not
    N x (N - 1), each a forked sshd on its target (100 hosts: 9,900 at once timed out on a 2-core lab)."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    for src in hosts:
        targets = []
        for dst in hosts:
            if dst.name == src.name or (src.name in settled and dst.name in settled):
                continue
            wanted = flows(cluster, src, dst)
            lst = listening.get(dst.name)
            testable = {*lst.bound, *lst.busy} if lst is not None and lst.problem is None else set()
            ports = [p for p in wanted if p in testable]
            targets += [(dst.name, dst.internal_address, p) for p in ports]
            if wanted and not ports:
                targets.append((dst.name, dst.internal_address, dst.ssh.port))
        if targets:
            out[src.name] = targets
    return out


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
    """Listen on the hosts' role ports, connect along the flows between them (connect_targets),
    stop listening.

    ``hosts`` should be the reachable ones only. Returns what each host listened on, and what each
    host could (not) connect to. Between two ``settled`` hosts nothing is probed, so a converged
    fleet costs no probe at all.
    """
    wanted = connect_targets(cluster, hosts, {h.name: probes.Listening() for h in hosts}, settled)
    reached = {dst for targets in wanted.values() for dst, _, _ in targets}
    if not wanted:
        return {}, {}
    role_ports = {h.name: [n.port for n in peer_ports(cluster, h)] for h in hosts}
    listening = _fan(
        [h for h in hosts if role_ports[h.name] and h.name in reached],
        lambda h: probes.parse_listening(*_run(pool, h, probes.listen_command(role_ports[h.name], listen_s))),
        limit,
    )
    try:
        targets = connect_targets(cluster, hosts, listening, settled)
        connectivity = _fan(
            [h for h in hosts if h.name in targets],
            lambda h: probes.parse_connect(*_run(pool, h, probes.connect_command(targets[h.name], connect_timeout))),
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
