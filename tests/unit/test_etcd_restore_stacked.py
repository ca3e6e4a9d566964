"""Restore of stacked etcd as data: the members read from the control planes' etcd manifests, the
refusals before anything changes, and the phases (manifests out, data aside, manifests back)."""

from __future__ import annotations

import subprocess

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts import etcd_stacked as facts_stacked
from kubeforge.model import EtcdTopology
from kubeforge.plan.etcd import restore_stacked as st
from kubeforge.plan.etcd.restore import RestoreInput, restore_phases
from kubeforge.plan.phase import Plan
from kubeforge.plan.steps import GateStep, RunStep
from tests.factories import make_cluster
from tests.sim.kubesim import etcdpod, host

# The shape kubeadm writes (one "- --flag=value" item per line, unquoted).
KUBEADM_MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://{ip}:2379
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://{ip}:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://{ip}:2380
    - --initial-cluster=cp-1=https://10.77.4.11:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379
    - --name={name}
    - --snapshot-count=10000
    image: registry.k8s.io/etcd:3.5.21-0
"""


def probe_output(name: str, ip: str, where: str = "manifests", tools: str = "etcdctl\n", api: str = "manifests") -> str:
    body = KUBEADM_MANIFEST.format(name=name, ip=ip) if where else ""
    return f"@@manifest\n{where}\n{body}@@apiserver\n{api}\n@@tools\n{tools}@@end\n"


def stacked_cluster(tmp_path):
    return make_cluster(tmp_path, topology=EtcdTopology.STACKED, n_workers=1)


def found_for(cluster, **overrides) -> dict[str, facts_stacked.StackedMember]:
    out = {}
    for cp in cluster.control_planes:
        text = overrides.get(cp.name) or probe_output(cp.name, cp.internal_address)
        out[cp.name] = facts_stacked.parse_probe(cp.name, text)
    return out


def test_the_probe_reads_a_members_identity_from_kubeadms_etcd_manifest():
    m = facts_stacked.parse_probe("cp-2", probe_output("cp-2", "10.77.4.12", tools="etcdctl\netcdutl\n--bump-revision\n"))
    assert (m.name, m.peer_url, m.data_dir, m.manifest, m.apiserver) == (
        "cp-2", "https://10.77.4.12:2380", "/var/lib/etcd", "manifests", "manifests")
    assert m.etcdctl and m.etcdutl and m.restore_flags == ("--bump-revision",)


def test_the_probe_finds_a_manifest_an_interrupted_restore_moved_aside():
    m = facts_stacked.parse_probe("cp-1", probe_output("cp-1", "10.77.4.11", where="aside", api="aside"))
    assert m.manifest == "aside" and m.apiserver == "aside" and m.name == "cp-1"


def test_the_probe_reads_the_manifest_the_simulated_kubeadm_writes(tmp_path):
    with host.use_root(str(tmp_path)):
        etcdpod.write_manifest("cp-3", "10.77.4.13", "cp-1=https://10.77.4.11:2380,cp-3=https://10.77.4.13:2380",
                               existing=True, image="registry.k8s.io/etcd:3.6.6-0")
        text = host.read("/etc/kubernetes/manifests/etcd.yaml")
    m = facts_stacked.parse_probe("cp-3", f"@@manifest\nmanifests\n{text}\n@@apiserver\n@@tools\netcdctl\n@@end\n")
    assert (m.name, m.peer_url, m.data_dir) == ("cp-3", "https://10.77.4.13:2380", "/var/lib/etcd")


def test_an_incomplete_probe_output_is_an_error_not_an_empty_member():
    with pytest.raises(ValueError, match="incomplete"):
        facts_stacked.parse_probe("cp-1", "@@manifest\nmanifests\n")


def test_members_that_match_the_inventory_pass_the_check(tmp_path):
    cluster = stacked_cluster(tmp_path)
    st.check_members(cluster, found_for(cluster))


@pytest.mark.parametrize("override,expected", [
    (("cp-2", "other", "10.77.4.12"), "cp-2: its etcd manifest names the member 'other', the inventory 'cp-2'"),
    (("cp-3", "cp-3", "10.77.4.99"), "cp-3: its etcd manifest advertises peer URL https://10.77.4.99:2380"),
])
def test_a_manifest_that_disagrees_with_the_inventory_is_refused_naming_the_host(tmp_path, override, expected):
    cluster = stacked_cluster(tmp_path)
    host_name, name, ip = override
    with pytest.raises(SafetyRefusal, match="do not match the inventory") as e:
        st.check_members(cluster, found_for(cluster, **{host_name: probe_output(name, ip)}))
    assert expected in str(e.value)


def test_a_control_plane_without_an_etcd_manifest_is_refused(tmp_path):
    cluster = stacked_cluster(tmp_path)
    with pytest.raises(SafetyRefusal, match="cp-1: no etcd static pod manifest"):
        st.check_members(cluster, found_for(cluster, **{"cp-1": probe_output("cp-1", "", where="")}))


def test_a_control_plane_without_etcdctl_or_etcdutl_is_refused_with_the_way_out(tmp_path):
    cluster = stacked_cluster(tmp_path)
    with pytest.raises(SafetyRefusal, match="no etcdutl or etcdctl on cp-2") as e:
        st.check_members(cluster, found_for(cluster, **{"cp-2": probe_output("cp-2", "10.77.4.12", tools="")}))
    assert "etcd-client" in (e.value.hint or "")


def stacked_input(cluster) -> RestoreInput:
    members = tuple(found_for(cluster).values())
    return RestoreInput(cluster, cluster.etcd_members, {}, cluster.control_planes, b"snapshot", "ab" * 32,
                        "test-20261122T080000Z-rev9", "20261122T081500Z", members)


def test_stacked_phases_take_both_manifests_out_before_the_data_and_put_etcd_back_before_the_api(tmp_path):
    cluster = stacked_cluster(tmp_path)
    plan = Plan("etcd restore", tuple(restore_phases(stacked_input(cluster))))
    assert [p.name for p in plan.phases] == ["StopApiServers", "StopEtcd", "PushSnapshot", "RestoreMemberData",
                                             "StartEtcdMembers", "WaitForEtcdHealthy", "StartApiServers",
                                             "RemoveSnapshotCopies"]
    by_phase = {p.name: [s for s in plan.steps if s in p.steps] for p in plan.phases}
    stop = by_phase["StopEtcd"]
    assert {s.host for s in stop} == {"cp-1", "cp-2", "cp-3"}
    assert all("mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.kubeforge-restore" in s.command.script
               for s in stop)
    assert all(s.unless is not None for s in stop)  # already stopped (a re-run): unchanged
    start = by_phase["StartEtcdMembers"]
    assert all(s.command.script.startswith("mv /etc/kubernetes/etcd.yaml.kubeforge-restore") for s in start)
    gate = by_phase["WaitForEtcdHealthy"][0]
    assert isinstance(gate, GateStep) and "/etc/kubernetes/pki/etcd/healthcheck-client.crt" in gate.probe.script
    assert all(f"https://10.77.4.1{i}:2379" in gate.probe.script for i in (1, 2, 3))
    assert not any("systemctl" in (s.command.script or " ".join(s.command.argv)) for s in plan.steps
                   if isinstance(s, RunStep))


def test_each_member_is_restored_with_its_manifests_identity_and_its_old_data_kept(tmp_path):
    cluster = stacked_cluster(tmp_path)
    plan = Plan("etcd restore", tuple(restore_phases(stacked_input(cluster))))
    restore = [s for p in plan.phases if p.name == "RestoreMemberData" for s in p.steps]
    script = next(s for s in restore if s.host == "cp-2").command.script
    assert "mv /var/lib/etcd /var/lib/etcd.kubeforge-20261122T081500Z" in script
    assert "ETCDCTL_API=3 etcdctl snapshot restore /var/lib/kubeforge/etcd/restore-test-20261122T080000Z-rev9.db" in script
    assert "--name=cp-2" in script and "--initial-advertise-peer-urls=https://10.77.4.12:2380" in script
    assert ("--initial-cluster=cp-1=https://10.77.4.11:2380,cp-2=https://10.77.4.12:2380,"
            "cp-3=https://10.77.4.13:2380") in script
    assert "--initial-cluster-token=test-restore-20261122T081500Z" in script
    assert "chown" not in script and "rm -rf /var/lib/etcd.kubeforge" not in script


def test_etcdutl_is_preferred_with_the_revision_bump_it_offers():
    m = facts_stacked.parse_probe("cp-1", probe_output("cp-1", "10.77.4.11", tools="etcdctl\netcdutl\n--bump-revision\n--mark-compacted\n"))
    script = st.restore_command(m, [m], snapshot="/s.db", token="t", stamp="S", bump_revision=1000).script
    assert "etcdutl snapshot restore /s.db" in script and "--bump-revision=1000" in script and "--mark-compacted" in script


def test_the_etcd_port_check_sees_a_listening_port_and_not_a_closed_one():
    """The port half of what the stop step waits on, run for real against a socket on loopback (the
    process half would see other etcds on this runner)."""
    import socket

    assert st.ETCD_PORT_OPEN in st.ETCD_UP
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        probe = st.ETCD_PORT_OPEN.replace("127.0.0.1/2379", f"127.0.0.1/{s.getsockname()[1]}")
        assert subprocess.run(["bash", "-c", probe]).returncode == 0
    assert subprocess.run(["bash", "-c", probe]).returncode != 0
