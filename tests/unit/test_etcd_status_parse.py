"""Parsing what etcdctl 3.4 prints for one member (recorded outputs in tests/fixtures/etcd/)."""

from pathlib import Path

from kubeforge.workflows.etcd.status import ClusterStatus, MemberStatus, parse_member_output

FIX = Path(__file__).parent.parent / "fixtures" / "etcd"


def test_a_healthy_leader_is_parsed_with_its_numbers_and_the_member_list():
    st, members = parse_member_output("etcd-1", "https://10.77.4.11:2379", (FIX / "status-leader.txt").read_text())
    assert st.healthy and st.is_leader and st.version == "3.4.23"
    assert st.db_size == 20480 and st.raft_index == 5 and st.member_id == format(3319814642761637952, "x")
    assert [m["name"] for m in members] == ["etcd-1", "etcd-2", "etcd-3"]


def test_a_member_whose_etcd_is_down_is_unhealthy_with_the_reason():
    st, members = parse_member_output("etcd-2", "https://10.77.4.12:2379", (FIX / "status-down.txt").read_text())
    assert not st.healthy and st.reachable and members == []
    assert "deadline" in st.error


def test_quorum_is_kept_with_one_of_three_members_down():
    leader, members = parse_member_output("etcd-1", "e1", (FIX / "status-leader.txt").read_text())
    f = MemberStatus(name="etcd-3", endpoint="e3", reachable=True, healthy=True, member_id="162e")
    down = MemberStatus(name="etcd-2", endpoint="e2", error="unreachable")
    status = ClusterStatus(members=[leader, down, f], member_list=members)
    assert status.quorum == 2 and status.has_quorum and not status.all_healthy
    lost = ClusterStatus(members=[leader, down, MemberStatus(name="etcd-3", endpoint="e3")], member_list=members)
    assert not lost.has_quorum


class _Replay:
    """Plays back recorded etcdctl outputs, one per call, per member (a transport stand-in that only
    answers the status script)."""

    def __init__(self, host: str, outputs: list[str]):
        self.host, self.outputs = host, outputs

    def run(self, command):
        from kubeforge.transport.base import RunResult

        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        return RunResult(self.host, "etcd status", 0, out, "", 0.01)


def test_a_backup_waits_for_a_new_leader_instead_of_giving_up_at_once(tmp_path):
    from kubeforge.workflows.etcd.backup import settled_status
    from tests.factories import make_cluster

    cluster = make_cluster(tmp_path, n_etcd=3)
    down, leader = (FIX / "status-down.txt").read_text(), (FIX / "status-leader.txt").read_text()
    pool = {h.name: _Replay(h.name, [down, down, leader]) for h in cluster.etcd_members}

    class Pool:
        def get(self, host):
            return pool[host.name]

    ticks = iter(range(100))
    status = settled_status(cluster, Pool(), clock=lambda: next(ticks), sleep=lambda s: None)
    assert any(m.healthy for m in status.members)
    never = {h.name: _Replay(h.name, [down]) for h in cluster.etcd_members}

    class Down:
        def get(self, host):
            return never[host.name]

    ticks = iter(range(100))
    status = settled_status(cluster, Down(), clock=lambda: next(ticks), sleep=lambda s: None)
    assert not any(m.healthy for m in status.members)
