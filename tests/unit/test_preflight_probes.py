"""The two preflight probes, run for real on this machine through LocalTransport (loopback only)."""

from __future__ import annotations

import dataclasses
import socket
import time

from kubeforge.facts.preflight.probes import parse_connect, parse_fsync, parse_listening
from kubeforge.facts.preflight.run_probes import run_connectivity_probe, run_fsync_probes
from kubeforge.model import Role, SshSettings
from kubeforge.transport.local import LocalTransport
from tests.factories import make_cluster, make_host


class _Local:
    def get(self, host):
        return LocalTransport(host.name)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_fsync_probe_measures_in_the_nearest_existing_dir_and_leaves_nothing_behind(tmp_path):
    host = make_host("etcd-1", "127.0.0.1", Role.ETCD)
    results = run_fsync_probes(_Local(), [host], str(tmp_path / "etcd" / "data"), limit=1)
    r = results["etcd-1"]
    assert r.problem is None, r.problem
    assert r.directory == str(tmp_path) and r.count == 200
    assert 0 < r.p99_ms <= r.max_ms
    assert list(tmp_path.iterdir()) == []


def test_connectivity_probe_listens_connects_and_stops_its_listeners():
    ssh_port, client, peer = _free_ports(3)
    ssh_stand_in = socket.socket()  # plays the peers' sshd: something must answer on the SSH port
    ssh_stand_in.bind(("127.0.0.1", ssh_port))
    ssh_stand_in.listen(16)
    try:
        base = make_cluster(n_etcd=2, n_cp=1, n_workers=0)
        ssh = SshSettings(user="root", port=ssh_port)
        hosts = tuple(make_host(f"etcd-{i}", "127.0.0.1", Role.ETCD, ssh=ssh) for i in (1, 2))
        cluster = dataclasses.replace(
            base, hosts=hosts, etcd=dataclasses.replace(base.etcd, client_port=client, peer_port=peer)
        )
        listening, conn = run_connectivity_probe(_Local(), cluster, hosts, limit=2, listen_s=10)
    finally:
        ssh_stand_in.close()
    # both "hosts" are this machine: whichever listener started first holds the ports
    bound = {p for lst in listening.values() for p in lst.bound}
    busy = {p for lst in listening.values() for p in lst.busy}
    assert bound == {client, peer} and busy == {client, peer}
    for name in ("etcd-1", "etcd-2"):
        assert conn[name].problem is None
        # the role ports were testable, so SSH is not probed besides them (run_probes.connect_targets)
        assert {(c.port, c.ok) for c in conn[name].connections} == {(client, True), (peer, True)}
    # the listener was stopped, not left for its 10 s: the ports can be bound again
    deadline = time.monotonic() + 3
    while True:
        try:
            with socket.socket() as s:
                # REUSEADDR: the accepted-and-closed probe connections leave TIME_WAIT entries
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", client))
                s.listen(1)
            break
        except OSError:
            assert time.monotonic() < deadline, "probe listener still holds its port"
            time.sleep(0.05)


def test_probe_parsers_turn_failures_and_garbage_into_problems():
    assert "python3 is not installed" in parse_fsync(127, "", "python3 is not installed\n").problem
    assert parse_fsync(0, "not json", "").problem
    assert parse_fsync(0, '{"dir": "/var/lib"}', "").problem.startswith("unreadable")
    assert parse_listening(0, '{"pid": 5, "bound": [6443], "busy": [], "errors": {}}', "").bound == (6443,)
    assert parse_listening(1, "", "Traceback").problem
    assert parse_connect(0, '[{"target": "a", "address": "10.77.4.11", "port": 22, "ok": false, "error": "timed out"}]', "").connections[0].error == "timed out"
    assert parse_connect(0, '[{"nope": 1}]', "").problem
