"""Facts are gathered once per run and passed down: counted per host on a transport that records
every command it is sent (and runs it on this machine: planning sends only read-only probes)."""

from __future__ import annotations

from collections import Counter

from kubeforge.model import EtcdTopology
from kubeforge.transport.local import LocalTransport
from kubeforge.transport.pool import TransportPool
from kubeforge.workflows.up import plan_for_up
from tests.factories import make_cluster
from tests.unit.test_up_planner import fresh_facts


class Recording(LocalTransport):
    def __init__(self, host: str, sent: list[tuple[str, str]]) -> None:
        super().__init__(host)
        self.sent = sent

    def run(self, command):
        self.sent.append((self.host, command.description or command.display()))
        return super().run(command)


def test_plan_up_on_external_etcd_reads_each_members_facts_once(tmp_path):
    # before: twice per member (plan_for_up's version guard, then the etcd install planner)
    cluster = make_cluster(tmp_path, topology=EtcdTopology.EXTERNAL, etcd_version="3.4.23", n_cp=1, n_workers=1)
    sent: list[tuple[str, str]] = []
    with TransportPool(cluster, factory=lambda h: Recording(h.name, sent)) as pool:
        plan, _ = plan_for_up(cluster, pool, facts={h.name: fresh_facts(h.name) for h in cluster.hosts})
    per_host = Counter(sent)
    print(sorted(per_host.items()))  # the measurement: commands per host and kind
    for member in cluster.etcd_members:
        assert per_host[(member.name, "etcd host facts")] == 1, sorted(per_host.items())
    assert per_host[(cluster.first_control_plane.name, "read the cluster state")] == 1
    # the etcd workflow's install phases were planned from those same facts
    assert {"InstallEtcdPackages", "StartEtcdMembers"} <= {p.name for p in plan.phases}
