"""Restore of stacked etcd (kubeadm's etcd static pods on the control planes) from one snapshot.

What an operator does by hand, as steps: on every control plane kube-apiserver.yaml and etcd.yaml
leave /etc/kubernetes/manifests (the kubelet stops both pods), kubeforge waits until etcd is gone
(no process, port 2379 closed), moves the data dir aside (never deletes it), restores the snapshot
with the member's identity as the etcd manifest states it (name, peer URL, data dir) and a new
cluster token, puts etcd.yaml back everywhere, waits for every member healthy with one leader, then
puts kube-apiserver.yaml back.

The etcd manifest is the authority for a member's identity; it must agree with the inventory (node
name = host name, peer URL on the host's internal address), else the restore is refused: a
mismatch means the inventory does not describe this cluster. A manifest moved aside by an
interrupted restore is read from where it was moved, so a re-run converges.
"""

from __future__ import annotations

import shlex

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcd_stacked import ETCD_ASIDE, StackedMember
from kubeforge.facts.etcdctl import port_open
from kubeforge.model import Cluster
from kubeforge.model.kubeadm_paths import ETCD_MANIFEST
from kubeforge.model.kubeadm_paths import MANIFESTS_DIR as MANIFESTS
from kubeforge.transport.base import Command

STOP_WAIT_S = 90  # the kubelet notices a removed manifest within seconds; etcd then exits on SIGTERM

# Is an etcd process alive or port 2379 open on this host? (true while etcd is still there)
ETCD_PROCESS = "grep -qx etcd /proc/[0-9]*/comm 2>/dev/null"
ETCD_PORT_OPEN = port_open("127.0.0.1", 2379)
ETCD_UP = f"{{ {ETCD_PROCESS} || {ETCD_PORT_OPEN}; }}"


def check_members(cluster: Cluster, found: dict[str, StackedMember]) -> None:
    """Refuse unless every control plane has an etcd manifest that matches the inventory and a
    restore tool: nothing has been changed when this raises."""
    from kubeforge.facts.etcdctl import peer_url

    problems, no_tool = [], []
    for cp in cluster.control_planes:
        m = found.get(cp.name)
        if m is None or not m.manifest:
            problems.append(f"{cp.name}: no etcd static pod manifest ({ETCD_MANIFEST}, nor {ETCD_ASIDE})")
            continue
        if m.name != cp.name:
            problems.append(f"{cp.name}: its etcd manifest names the member {m.name!r}, the inventory {cp.name!r}")
        if m.peer_url != peer_url(cluster, cp):
            problems.append(f"{cp.name}: its etcd manifest advertises peer URL {m.peer_url}, "
                            f"the inventory says {peer_url(cluster, cp)}")
        if not m.data_dir:
            problems.append(f"{cp.name}: its etcd manifest has no --data-dir")
        if not (m.etcdutl or m.etcdctl):
            no_tool.append(cp.name)
    if problems:
        raise SafetyRefusal("the control planes' etcd manifests do not match the inventory: " + "; ".join(problems),
                            hint="fix the inventory (host names, internal addresses) to describe this cluster; "
                                 "nothing was changed")
    if no_tool:
        raise SafetyRefusal(f"no etcdutl or etcdctl on {', '.join(no_tool)}: the snapshot is restored with it there",
                            hint="install Debian's etcd-client (kubeforge up does so on stacked control planes); "
                                 "nothing was changed")


def initial_cluster(members: list[StackedMember]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def stop_etcd_command() -> Command:
    q_m, q_a = shlex.quote(ETCD_MANIFEST), shlex.quote(ETCD_ASIDE)
    script = "\n".join(
        [
            f"if [ -e {q_m} ]; then mv {q_m} {q_a}; fi",
            f"for _ in $(seq {STOP_WAIT_S * 2}); do {ETCD_UP} || exit 0; sleep 0.5; done",
            f"echo 'etcd still runs {STOP_WAIT_S}s after its manifest left {MANIFESTS}: is the kubelet running?' >&2",
            "exit 1",
        ]
    )
    return Command(script=script, sudo=True, timeout=STOP_WAIT_S + 30,
                   description="move etcd.yaml aside and wait until etcd is gone")


def etcd_stopped_check() -> Command:
    return Command(script=f"[ ! -e {shlex.quote(ETCD_MANIFEST)} ] && ! {ETCD_UP}",
                   sudo=True, timeout=30)


def restore_command(member: StackedMember, all_members: list[StackedMember], *, snapshot: str, token: str,
                    stamp: str, bump_revision: int) -> Command:
    data = member.data_dir or "/var/lib/etcd"
    q_data, aside, snap = shlex.quote(data), shlex.quote(f"{data.rstrip('/')}.kubeforge-{stamp}"), shlex.quote(snapshot)
    args = [f"--name={member.name}", f"--initial-cluster={initial_cluster(all_members)}",
            f"--initial-cluster-token={token}", f"--initial-advertise-peer-urls={member.peer_url}",
            f"--data-dir={data}"]
    if member.etcdutl:
        extra = []
        if "--bump-revision" in member.restore_flags:
            extra.append(f"--bump-revision={bump_revision}")
        if "--mark-compacted" in member.restore_flags:
            extra.append("--mark-compacted")
        tool = f"etcdutl snapshot restore {snap} " + " ".join(shlex.quote(a) for a in args + extra)
    else:
        tool = f"ETCDCTL_API=3 etcdctl snapshot restore {snap} " + " ".join(shlex.quote(a) for a in args)
    script = "\n".join(
        [
            f"if {ETCD_UP}; then echo 'etcd is still running' >&2; exit 1; fi",
            # keep whatever was there, even an empty dir, so nothing is ever lost by a restore
            f"if [ -e {q_data} ] && [ ! -e {aside} ]; then mv {q_data} {aside}; fi",
            f"rm -rf {q_data}",
            f"{tool} >/dev/null",
            f"chmod 0700 {q_data}",  # kubeadm's etcd runs as root, so no owner change
        ]
    )
    return Command(script=script, sudo=True, timeout=900, description=f"restore etcd data of {member.host}")


def start_etcd_command() -> Command:
    return Command(script=f"mv {shlex.quote(ETCD_ASIDE)} {shlex.quote(ETCD_MANIFEST)}", sudo=True, timeout=60,
                   description="put etcd.yaml back")


def etcd_started_check() -> Command:
    return Command(script=f"[ ! -e {shlex.quote(ETCD_ASIDE)} ]", sudo=True, timeout=30)


def members_in_order(cluster: Cluster, found: dict[str, StackedMember]) -> list[StackedMember]:
    return [found[cp.name] for cp in cluster.control_planes]
