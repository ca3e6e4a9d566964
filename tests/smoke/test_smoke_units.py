"""Pure parts of the smoke test: the inventory generator and the stage judges (no VMs, no vagrant)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kubeforge.inventory import loads
from tests.smoke import check, inventory

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHAPE = {
    "etcdTopology": "external",
    "subnet": "10.77.200",
    "hosts": [
        {"name": "cp-1", "address": "10.77.200.21", "roles": ["control-plane", "etcd"], "cpus": 2, "memoryMiB": 2048},
        {"name": "worker-1", "address": "10.77.200.31", "roles": ["worker"], "cpus": 1, "memoryMiB": 1024},
    ],
}


def _shape(cps: int, workers: int, etcd: int, topology: str = "external") -> dict:
    hosts = [{"name": f"etcd-{i}", "address": f"10.77.200.{10 + i}", "roles": ["etcd"]} for i in range(1, etcd + 1)]
    on_cp = ["etcd"] if topology == "external" and etcd == 0 else []
    hosts += [{"name": f"cp-{i}", "address": f"10.77.200.{20 + i}", "roles": ["control-plane", *on_cp]} for i in range(1, cps + 1)]
    hosts += [{"name": f"worker-{i}", "address": f"10.77.200.{30 + i}", "roles": ["worker"]} for i in range(1, workers + 1)]
    return {"etcdTopology": topology, "subnet": "10.77.200", "hosts": hosts}


def _errors(text: str) -> list[str]:
    from kubeforge.errors import InventoryError

    try:
        loads(text, file="vagrant.yaml", source=REPO / "inventories" / "vagrant.yaml")
    except InventoryError as e:
        return [str(e)]
    return []


def test_checked_in_vagrant_inventory_is_the_generators_default_shape_in_upstream_mode():
    doc = inventory.build(DEFAULT_SHAPE, mode="upstream", key="~/.vagrant.d/insecure_private_key",
                          known_hosts="../.vagrant/kubeforge/known_hosts")
    assert inventory.dump(doc) == (REPO / "inventories" / "vagrant.yaml").read_text()


def test_vagrant_inventory_uses_private_addresses_and_strict_host_keys():
    text = (REPO / "inventories" / "vagrant.yaml").read_text()
    result = loads(text, file="vagrant.yaml", source=REPO / "inventories" / "vagrant.yaml")
    cluster = result.cluster
    assert [h.address for h in cluster.hosts] == ["10.77.200.21", "10.77.200.31"]
    assert cluster.ssh.host_key_policy.value == "strict"
    assert cluster.ssh.user == "vagrant"


@pytest.mark.parametrize("cps,workers,etcd,topology", [
    (1, 1, 0, "external"), (1, 0, 0, "external"), (3, 2, 0, "external"), (3, 2, 3, "external"),
    (2, 1, 3, "external"), (5, 9, 5, "external"), (1, 1, 0, "stacked"), (3, 2, 0, "stacked"),
])
def test_every_vagrant_shape_gives_an_inventory_kubeforge_accepts(cps, workers, etcd, topology):
    for mode in ("offline", "upstream"):
        doc = inventory.build(_shape(cps, workers, etcd, topology), mode=mode, key="/k", known_hosts="/kh",
                              mirror_url="http://10.77.200.1:8470", cni="/cni.yaml" if mode == "offline" else None)
        assert _errors(inventory.dump(doc)) == []


def test_several_control_planes_share_the_first_ones_address_as_endpoint():
    doc = inventory.build(_shape(3, 1, 0), mode="upstream", key="/k", known_hosts="/kh")
    assert doc["spec"]["controlPlaneEndpoint"] == {"host": "10.77.200.21", "port": 6443, "mode": "external"}


def test_offline_inventory_installs_from_the_mirror_with_the_simulators_cni():
    doc = inventory.build(DEFAULT_SHAPE, mode="offline", key="/k", known_hosts="/kh",
                          mirror_url="http://10.77.200.1:8470", cni="/repo/tests/smoke/manifests/kubesim-cni.yaml")
    assert doc["spec"]["packages"] == {"source": "mirror", "mirrorURL": "http://10.77.200.1:8470"}
    assert doc["spec"]["network"]["cni"] == {"name": "kubesim-cni", "manifest": "/repo/tests/smoke/manifests/kubesim-cni.yaml"}


def test_offline_inventory_without_a_mirror_is_refused():
    with pytest.raises(ValueError, match="mirror_url"):
        inventory.build(DEFAULT_SHAPE, mode="offline", key="/k", known_hosts="/kh")


def _node(name: str, ready: str, version: str = "v1.33.5") -> dict:
    return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": ready}],
                                                   "nodeInfo": {"kubeletVersion": version}}}


def test_nodes_check_passes_only_when_every_node_is_ready_at_the_version():
    doc = {"items": [_node("cp-1", "True"), _node("worker-1", "True")]}
    assert check.nodes(doc, 2, "1.33.5") == "2 nodes Ready at v1.33.5: cp-1, worker-1"
    with pytest.raises(check.Fail, match="kubelet not at v1.34.2: cp-1=v1.33.5, worker-1=v1.33.5"):
        check.nodes(doc, 2, "1.34.2")


def test_nodes_check_names_the_node_that_is_not_ready_or_missing():
    with pytest.raises(check.Fail, match="not Ready: worker-1"):
        check.nodes({"items": [_node("cp-1", "True"), _node("worker-1", "Unknown")]}, 2, None)
    with pytest.raises(check.Fail, match="1 nodes registered \\(cp-1\\), expected 2"):
        check.nodes({"items": [_node("cp-1", "True")]}, 2, None)


def _pod(name: str, phase: str, node: str | None, app: str = "smoke-web") -> dict:
    return {"metadata": {"name": name, "labels": {"app": app}}, "spec": {"nodeName": node}, "status": {"phase": phase}}


def test_pods_check_counts_only_running_scheduled_pods_of_the_app():
    doc = {"items": [_pod("a", "Running", "worker-1"), _pod("b", "Pending", None), _pod("c", "Running", "w", app="other")]}
    with pytest.raises(check.Fail, match="1/2 pods Running \\(2 pods in all\\)"):
        check.pods(doc, "smoke-web", 2)
    doc["items"].append(_pod("d", "Running", "worker-1"))
    assert check.pods(doc, "smoke-web", 2) == "app=smoke-web: 2/2 pods Running: a@worker-1, d@worker-1"


def _backup(tmp_path: Path, verified: bool = True) -> dict:
    snap = tmp_path / "vagrant-1.db"
    snap.write_bytes(b"etcd snapshot bytes" * 100)
    manifest = {"name": "vagrant-1", "file": snap.name, "file_sha256": hashlib.sha256(snap.read_bytes()).hexdigest(),
                "verified": verified, "revision": 42, "total_keys": 7}
    (tmp_path / "vagrant-1.json").write_text(json.dumps(manifest))
    return {"manifest": manifest, "path": str(tmp_path / "vagrant-1.json")}


def test_backup_check_recomputes_the_snapshots_sha256_and_prints_its_name(tmp_path, capsys):
    assert "verified, sha256 matches its manifest" in check.backup(_backup(tmp_path))
    assert capsys.readouterr().out.strip() == "vagrant-1"


def test_backup_check_fails_on_a_changed_snapshot_or_an_unverified_backup(tmp_path):
    doc = _backup(tmp_path)
    (tmp_path / "vagrant-1.db").write_bytes(b"tampered")
    with pytest.raises(check.Fail, match="differs from the manifest"):
        check.backup(doc)
    with pytest.raises(check.Fail, match="did not mark it verified"):
        check.backup(_backup(tmp_path, verified=False))


def test_etcd_check_needs_every_member_healthy():
    assert check.etcd({"members": [{}], "healthy": 1, "hasQuorum": True, "leader": "cp-1"}) == \
        "etcd: 1/1 members healthy, leader cp-1"
    with pytest.raises(check.Fail, match="2/3 members healthy, quorum kept"):
        check.etcd({"members": [{}, {}, {}], "healthy": 2, "hasQuorum": True})


def test_service_check_reads_kubectls_object_and_the_simulators_list():
    assert check.service({"kind": "Service", "metadata": {"name": "smoke-web"}}, "smoke-web") == "service smoke-web exists"
    assert check.service({"kind": "List", "items": [{"kind": "Service", "name": "smoke-web"}]}, "smoke-web")
    with pytest.raises(check.Fail, match="service smoke-web does not exist"):
        check.service({"kind": "List", "items": []}, "smoke-web")
