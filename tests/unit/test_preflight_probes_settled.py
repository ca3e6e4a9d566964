"""`up` probes only what it is about to add: hosts already running as members ("settled") are neither
probed against each other nor fsync-measured again, so a converged fleet's re-run sends no N x N
connections (each one a forked sshd on its target). Real listeners and connections on loopback."""

from __future__ import annotations

import dataclasses
import socket

from kubeforge.facts.preflight.probes import Listening
from kubeforge.facts.preflight.run_probes import connect_targets, run_connectivity_probe
from kubeforge.model import Role, SshSettings
from kubeforge.transport.local import LocalTransport
from kubeforge.workflows.preflight import run_probes
from tests.factories import make_cluster, make_host
from tests.unit.test_preflight_probes import _free_ports


class _Recording:
    """LocalTransport per host, remembering which host ran which command."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str]] = []

    def get(self, host):
        outer = self

        class _T(LocalTransport):
            def run(self, command):
                outer.ran.append((host.name, command.description))
                return super().run(command)

        return _T(host.name)


def _cluster_of_three(ssh_port: int, client: int, peer: int):
    base = make_cluster(n_etcd=3, n_cp=1, n_workers=0)
    ssh = SshSettings(user="root", port=ssh_port)
    hosts = tuple(make_host(f"etcd-{i}", "127.0.0.1", Role.ETCD, ssh=ssh) for i in (1, 2, 3))
    return dataclasses.replace(base, hosts=hosts, etcd=dataclasses.replace(base.etcd, client_port=client, peer_port=peer))


def test_settled_hosts_connect_only_to_the_new_one_and_the_new_one_to_every_settled_one():
    ssh_port, client, peer = _free_ports(3)
    ssh_stand_in = socket.socket()  # plays the peers' sshd
    ssh_stand_in.bind(("127.0.0.1", ssh_port))
    ssh_stand_in.listen(16)
    try:
        cluster = _cluster_of_three(ssh_port, client, peer)
        pool = _Recording()
        _, conn = run_connectivity_probe(pool, cluster, cluster.hosts, limit=3, listen_s=10,
                                         settled=frozenset({"etcd-1", "etcd-2"}))
    finally:
        ssh_stand_in.close()
    targets = {name: {c.target for c in r.connections} for name, r in conn.items()}
    assert targets == {"etcd-1": {"etcd-3"}, "etcd-2": {"etcd-3"}, "etcd-3": {"etcd-1", "etcd-2"}}
    assert all(c.ok for r in conn.values() for c in r.connections)


def test_a_converged_fleet_is_not_probed_at_all():
    cluster = _cluster_of_three(*_free_ports(3))
    pool = _Recording()
    everyone = frozenset(h.name for h in cluster.hosts)
    results = run_probes(pool, cluster, cluster.hosts, limit=3, settled=everyone)
    assert pool.ran == []
    assert (results.fsync, results.listening, results.connectivity) == ({}, {}, {})


def test_only_an_etcd_member_not_yet_running_has_its_disk_measured(tmp_path):
    cluster = _cluster_of_three(*_free_ports(3))
    cluster = dataclasses.replace(cluster, etcd=dataclasses.replace(cluster.etcd, data_dir=str(tmp_path / "etcd")))
    pool = _Recording()
    results = run_probes(pool, cluster, cluster.hosts, limit=3, connectivity=False,
                         settled=frozenset({"etcd-1", "etcd-2"}))
    assert set(results.fsync) == {"etcd-3"} and results.fsync["etcd-3"].problem is None
    assert {host for host, _ in pool.ran} == {"etcd-3"}


def test_a_fleet_probes_the_flows_it_needs_not_every_pair_and_ssh_only_where_a_listener_failed():
    cluster = make_cluster(n_etcd=3, n_cp=3, n_workers=20)
    ports = {"etcd": (2379, 2380), "cp": (6443,), "worker": (10250,)}
    listening = {h.name: Listening(pid=1, bound=ports[h.name.split("-")[0]]) for h in cluster.hosts}
    listening["worker-2"] = Listening(problem="python3 is not installed")
    targets = connect_targets(cluster, cluster.hosts, listening)
    worker = {(dst, port) for dst, _, port in targets["worker-1"]}
    assert worker == {("cp-1", 6443), ("cp-2", 6443), ("cp-3", 6443)}  # no worker-to-worker probe
    cp = {(dst, port) for dst, _, port in targets["cp-1"]}
    assert ("worker-1", 10250) in cp and ("worker-2", 22) in cp and ("worker-2", 10250) not in cp
    assert ("etcd-1", 2379) in cp and ("cp-2", 6443) in cp
    total = sum(len(t) for t in targets.values())
    assert total < len(cluster.hosts) * (len(cluster.hosts) - 1) / 4
