"""What every etcd member says about itself (`kubeforge etcd status`, and the health every etcd
change and upgrade reads first): members, leader, version, db size, raft index, health, alarms.

Every member is asked about itself over SSH (one script per member, in parallel), so a member that
is down, or a machine that is unreachable, shows as such while the others still answer.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from kubeforge.facts.etcdctl import client_url, etcdctl_line
from kubeforge.model import Cluster, EtcdTopology, Host
from kubeforge.transport.base import Command

_SEP = "@@kubeforge-section"


@dataclass
class MemberStatus:
    name: str
    endpoint: str
    reachable: bool = False  # SSH reached the machine
    healthy: bool = False
    member_id: str | None = None
    is_leader: bool = False
    is_learner: bool = False
    version: str | None = None
    db_size: int | None = None
    db_size_in_use: int | None = None
    raft_index: int | None = None
    raft_term: int | None = None
    leader_id: str | None = None
    alarms: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ClusterStatus:
    members: list[MemberStatus]
    member_list: list[dict]  # what the cluster itself says its members are

    @property
    def leader(self) -> MemberStatus | None:
        leaders = [m for m in self.members if m.is_leader]
        return leaders[0] if leaders else None

    @property
    def healthy_count(self) -> int:
        return sum(1 for m in self.members if m.healthy)

    @property
    def quorum(self) -> int:
        voters = [m for m in self.member_list if not m.get("isLearner")] or self.members
        return len(voters) // 2 + 1

    @property
    def has_quorum(self) -> bool:
        return self.healthy_count >= self.quorum and self.leader is not None

    @property
    def all_healthy(self) -> bool:
        return all(m.healthy for m in self.members) and self.leader is not None and not self.alarms

    @property
    def alarms(self) -> list[str]:
        return [f"{m.name}: {a}" for m in self.members for a in m.alarms]

    def to_dict(self) -> dict:
        return {
            "members": [asdict(m) for m in self.members],
            "memberList": self.member_list,
            "leader": self.leader.name if self.leader else None,
            "quorum": self.quorum,
            "healthy": self.healthy_count,
            "hasQuorum": self.has_quorum,
            "allHealthy": self.all_healthy,
        }


def status_script(cluster: Cluster, host: Host) -> str:
    ep = [client_url(cluster, host)]
    # A stopped member would make each etcdctl call below wait out its timeouts (~1 min in all).
    guard = []
    if cluster.etcd.topology is EtcdTopology.EXTERNAL:
        guard = ['if ! systemctl is-active --quiet etcd; then echo "etcd is not running ($(systemctl is-active etcd))"; exit 0; fi']
    return "\n".join(
        [
            *guard,
            f"{etcdctl_line(cluster, ep, 'endpoint', 'status', '-w', 'json')} 2>&1 || true",
            f"echo {_SEP}",
            f"{etcdctl_line(cluster, ep, 'endpoint', 'health', '-w', 'json')} 2>&1 || true",
            f"echo {_SEP}",
            f"{etcdctl_line(cluster, ep, 'alarm', 'list')} 2>&1 || true",
            f"echo {_SEP}",
            f"{etcdctl_line(cluster, ep, 'member', 'list', '-w', 'json')} 2>&1 || true",
        ]
    )


def _json_line(text: str):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") or line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("[", "{"))]
    return lines[-1][:300] if lines else "no answer"


def parse_member_output(name: str, endpoint: str, output: str) -> tuple[MemberStatus, list[dict]]:
    """Parse the four sections of ``status_script`` output for one member."""
    parts = output.split(_SEP)
    parts += [""] * (4 - len(parts))
    st = MemberStatus(name=name, endpoint=endpoint, reachable=True)
    status = _json_line(parts[0])
    if isinstance(status, list) and status and "Status" in status[0]:
        s = status[0]["Status"]
        st.member_id = format(int(s["header"]["member_id"]), "x")
        st.leader_id = format(int(s.get("leader", 0)), "x")
        st.is_leader = s["header"]["member_id"] == s.get("leader")
        st.is_learner = bool(s.get("isLearner", False))
        st.version = s.get("version")
        st.db_size = s.get("dbSize")
        st.db_size_in_use = s.get("dbSizeInUse")
        st.raft_index = s.get("raftIndex")
        st.raft_term = s.get("raftTerm")
    else:
        st.error = _last_error(parts[0])
    health = _json_line(parts[1])
    if isinstance(health, list) and health:
        st.healthy = bool(health[0].get("health")) and st.member_id is not None
        if not health[0].get("health") and health[0].get("error"):
            st.error = str(health[0]["error"])[:300]
    st.alarms = [ln.strip() for ln in parts[2].splitlines() if ln.strip().startswith("memberID:")]
    members = _json_line(parts[3])
    member_list = []
    if isinstance(members, dict):
        for m in members.get("members", []):
            member_list.append(
                {
                    "id": format(int(m["ID"]), "x"),
                    "name": m.get("name", ""),
                    "peerURLs": m.get("peerURLs", []),
                    "clientURLs": m.get("clientURLs", []),
                    "isLearner": bool(m.get("isLearner", False)),
                }
            )
    return st, member_list


def gather_status(cluster: Cluster, pool, members: tuple[Host, ...] | None = None, *, limit: int = 30) -> ClusterStatus:
    """Ask every member about itself, in parallel. ``pool.get(host)`` gives a Transport."""
    members = cluster.etcd_members if members is None else members

    def one(host: Host) -> tuple[MemberStatus, list[dict]]:
        endpoint = client_url(cluster, host)
        try:
            result = pool.get(host).run(
                Command(script=status_script(cluster, host), sudo=True, timeout=60, check=False, description="etcd status")
            )
        except Exception as exc:  # noqa: BLE001 - unreachable machine: reported, never fatal for the others
            return MemberStatus(name=host.name, endpoint=endpoint, error=str(exc)[:300]), []
        return parse_member_output(host.name, endpoint, result.stdout + result.stderr)

    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(members)))) as ex:
        results = list(ex.map(one, members))
    member_list: list[dict] = []
    for _, ml in results:
        if len(ml) > len(member_list):
            member_list = ml
    return ClusterStatus(members=[r[0] for r in results], member_list=member_list)
