"""An inventory becomes a complete, frozen Cluster: defaults once, paths resolved, SSH merged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kubeforge.inventory import load, load_cluster, loads
from kubeforge.model import EndpointMode, EtcdTopology, HostKeyPolicy, PackageSourceKind, Role

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata:
  name: mini
spec:
  kubernetesVersion: 1.35.1
  hosts:
    - name: cp-1
      address: 10.0.0.11
      roles: [control-plane]
    - name: w-1
      address: 10.0.0.21
      roles: [worker]
"""


def _load(tmp_path: Path, text: str):
    inv = tmp_path / "inv.yaml"
    inv.write_text(text)
    return load(inv)


def test_a_minimal_inventory_gets_every_default_once(tmp_path):
    c = _load(tmp_path, MINIMAL).cluster
    assert c.etcd.topology is EtcdTopology.STACKED  # no etcd hosts
    assert str(c.etcd.version) == "3.6.6"  # kubeadm 1.35's etcd (versions.yaml kubeadmEtcd)
    assert c.endpoint.mode is EndpointMode.NONE
    assert c.endpoint.host == "10.0.0.11"  # the single control plane
    assert c.endpoint.port == 6443
    assert c.network.pod_cidr == "10.244.0.0/16" and c.network.service_cidr == "10.96.0.0/12"
    assert c.etcd.backup.directory == tmp_path / ".kubeforge" / "mini" / "backups"
    assert c.ssh.user == "root" and c.ssh.host_key_policy is HostKeyPolicy.STRICT
    assert c.packages.kind is PackageSourceKind.UPSTREAM
    assert c.upgrade.max_unavailable == "1"
    assert c.source == tmp_path / "inv.yaml" and c.source.is_absolute()
    assert c.parallelism == 30 and c.kubelet.max_pods == 110


def test_control_planes_get_the_no_schedule_taint_and_workers_do_not(tmp_path):
    c = _load(tmp_path, MINIMAL).cluster
    assert [str(t) for t in c.host("cp-1").taints] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert c.host("w-1").taints == ()


def test_allowing_workloads_on_control_planes_leaves_them_untainted(tmp_path):
    c = load_cluster(REPO / "inventories" / "single-node.yaml")
    node = c.host("node-1")
    assert node.taints == () and node.is_worker and node.is_control_plane
    assert c.allow_workloads_on_control_planes


def test_per_host_ssh_merges_over_the_cluster_defaults():
    c = load_cluster(REPO / "inventories" / "ha-external-etcd.yaml")
    w3 = c.host("worker-3")
    assert (w3.ssh.user, w3.ssh.port) == ("ops", 2222)
    assert w3.ssh.identity_file == Path("~/.ssh/id_ed25519").expanduser()
    assert w3.internal_address == "10.0.0.33" and w3.address == "192.168.10.33"
    assert c.host("worker-1").ssh.port == 22


def test_relative_paths_resolve_against_the_inventory_directory(tmp_path):
    text = MINIMAL.replace("  hosts:\n", """\
  ssh:
    identityFile: keys/id_ed25519
    knownHosts: ~/kh
  etcd:
    backup:
      directory: snaps
      encryption: keyfile
      keyFile: ../secret/backup.key
  network:
    cni:
      manifest: cni/calico.yaml
  packages:
    source: offline
    bundleDir: bundle
  hosts:
""", 1)
    sub = tmp_path / "site"
    sub.mkdir()
    result = _load(sub, text)
    c = result.cluster
    assert c.ssh.identity_file == sub / "keys" / "id_ed25519"
    assert c.ssh.known_hosts == Path.home() / "kh"
    assert c.etcd.backup.directory == sub / "snaps"
    assert c.etcd.backup.key_file == sub / "../secret/backup.key"
    assert c.network.cni.manifest == str(sub / "cni" / "calico.yaml")
    assert c.packages.bundle_dir == sub / "bundle"
    assert c.host("cp-1").ssh.identity_file == sub / "keys" / "id_ed25519"
    # files that do not exist yet are warnings, never errors
    assert {w.where for w in result.warnings} >= {"ssh.identityFile", "network.cni.manifest", "packages.bundleDir"}


def test_host_origin_points_at_the_hosts_entry(tmp_path):
    c = _load(tmp_path, MINIMAL).cluster
    assert c.host("cp-1").origin == f"{tmp_path / 'inv.yaml'}:8:7"
    assert c.host("w-1").origin == f"{tmp_path / 'inv.yaml'}:11:7"


def test_the_model_is_frozen(tmp_path):
    c = _load(tmp_path, MINIMAL).cluster
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "other"  # type: ignore[misc]


def test_external_topology_is_inferred_from_etcd_hosts():
    c = load_cluster(REPO / "inventories" / "ha-external-etcd.yaml")
    assert c.etcd.topology is EtcdTopology.EXTERNAL
    assert [h.name for h in c.etcd_members] == ["etcd-1", "etcd-2", "etcd-3"]
    assert c.etcd.backup.keep == 14
    assert c.upgrade.batch_size(8) == 2


def test_the_haproxy_example_has_two_balancers_and_three_stacked_members():
    c = load_cluster(REPO / "inventories" / "ha-stacked-haproxy.yaml")
    assert c.endpoint.mode is EndpointMode.HAPROXY and c.endpoint.interface == "eth0"
    assert [h.name for h in c.load_balancers] == ["lb-1", "lb-2"]
    assert [h.name for h in c.etcd_members] == ["cp-1", "cp-2", "cp-3"]
    assert len(c.workers) == 3
    assert c.endpoint.extra_sans == ("api.prod-stacked.example.com",)
    assert all(Role.ETCD not in h.roles for h in c.hosts)


def test_yaml_merge_keys_and_anchors_are_honoured(tmp_path):
    text = MINIMAL.replace("""    - name: w-1
      address: 10.0.0.21
      roles: [worker]
""", """    - &worker
      name: w-1
      address: 10.0.0.21
      roles: [worker]
      labels: {pool: a}
    - <<: *worker
      name: w-2
      address: 10.0.0.22
""")
    c = _load(tmp_path, text).cluster
    assert c.host("w-2").labels == {"pool": "a"} and c.host("w-2").is_worker


def test_numbers_in_string_fields_are_read_as_text(tmp_path):
    text = MINIMAL.replace("roles: [worker]", "roles: [worker]\n      labels: {rack: 12}")
    c = _load(tmp_path, text).cluster
    assert c.host("w-1").labels == {"rack": "12"}


def test_loads_validates_text_without_a_file(tmp_path):
    result = loads(MINIMAL, file="mem.yaml", source=tmp_path / "mem.yaml")
    assert result.cluster.name == "mini"
    assert result.cluster.source == tmp_path / "mem.yaml"


def test_ssh_config_path_and_the_settings_the_inventory_wrote_reach_the_model():
    from pathlib import Path as _P

    from kubeforge.inventory import loads as _loads

    text = (_P(__file__).resolve().parents[2] / "inventories" / "single-node.yaml").read_text()
    text = text.replace("    user: root\n", "    user: root\n    sshConfig: site/ssh_config\n")
    cluster = _loads(text, file="inv.yaml", source=_P("/srv/inv/inv.yaml")).cluster
    ssh = cluster.hosts[0].ssh
    assert ssh.ssh_config == _P("/srv/inv/site/ssh_config")
    assert ssh.given == frozenset({"user"})
    none = _loads(text.replace("sshConfig: site/ssh_config", "sshConfig: none"), file="inv.yaml",
                  source=_P("/srv/inv/inv.yaml")).cluster
    assert str(none.hosts[0].ssh.ssh_config) == "none"
