"""Cross-field rules, one behaviour per test, on small inventories written inline."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.errors import InventoryError
from kubeforge.inventory import load, loads

HEAD = """\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata:
  name: t
spec:
  kubernetesVersion: 1.35.1
"""


def hosts(*rows: str) -> str:
    """``hosts("cp-1 10.0.0.11 control-plane", ...)`` -> a hosts: block."""
    out = "  hosts:\n"
    for row in rows:
        name, address, roles = row.split(" ", 2)
        out += f"    - name: {name}\n      address: {address}\n      roles: [{roles}]\n"
    return out


SMALL = hosts("cp-1 10.0.0.11 control-plane", "w-1 10.0.0.21 worker")
HA3 = hosts("cp-1 10.0.0.11 control-plane", "cp-2 10.0.0.12 control-plane", "cp-3 10.0.0.13 control-plane",
            "w-1 10.0.0.21 worker")


def check(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as ``where: message``."""
    try:
        result = loads(text, file="inv.yaml", source=Path("/nonexistent/inv.yaml"))
    except InventoryError as exc:
        return [f"{p.where}: {p.message}" for p in exc.problems], [f"{p.where}: {p.message}" for p in exc.warnings]
    return [], [f"{p.where}: {p.message}" for p in result.warnings]


def errors(text: str) -> list[str]:
    return check(text)[0]


def test_a_valid_small_inventory_has_no_errors():
    assert errors(HEAD + SMALL) == []


def test_one_etcd_member_is_a_warning():
    assert check(HEAD + SMALL)[1] == ["hosts: a single etcd member has no fault tolerance; use 3 for production"]


def test_four_stacked_control_planes_make_an_even_etcd_count():
    text = HEAD + "  controlPlaneEndpoint: {host: lb.example.com, mode: external}\n" + hosts(
        *(f"cp-{i} 10.0.0.1{i} control-plane" for i in range(1, 5)), "w-1 10.0.0.21 worker")
    assert errors(text) == ["hosts: 4 etcd members: the count must be odd (1, 3, 5, 7); an even count tolerates no "
                            "more failures than 3 and risks split votes"]


def test_more_than_seven_etcd_members_is_a_warning():
    text = HEAD + "  controlPlaneEndpoint: {host: lb.example.com, mode: external}\n" + hosts(
        *(f"e-{i} 10.0.1.{i} etcd" for i in range(1, 10)), "cp-1 10.0.0.11 control-plane", "w-1 10.0.0.21 worker")
    errs, warns = check(text)
    assert errs == []
    assert warns == ["hosts: 9 etcd members: more than 7 slows every write without useful extra fault tolerance"]


def test_two_control_planes_are_fine_with_external_etcd():
    text = HEAD + "  controlPlaneEndpoint: {host: lb.example.com, mode: external}\n" + hosts(
        "e-1 10.0.1.1 etcd", "e-2 10.0.1.2 etcd", "e-3 10.0.1.3 etcd",
        "cp-1 10.0.0.11 control-plane", "cp-2 10.0.0.12 control-plane", "w-1 10.0.0.21 worker")
    assert errors(text) == []


def test_the_vip_must_not_be_a_hosts_address():
    text = HEAD + "  controlPlaneEndpoint: {host: 10.0.0.12, mode: kube-vip, interface: eth0}\n" + HA3
    assert errors(text) == ["controlPlaneEndpoint.host: the VIP 10.0.0.12 is also the address of hosts[1] (cp-2); "
                            "a VIP must be an unused address"]


def test_haproxy_on_a_control_plane_cannot_use_the_api_servers_port():
    text = HEAD + "  controlPlaneEndpoint: {host: 10.0.0.100, mode: haproxy, interface: eth0}\n" + hosts(
        "cp-1 10.0.0.11 control-plane, load-balancer", "cp-2 10.0.0.12 control-plane, load-balancer",
        "cp-3 10.0.0.13 control-plane", "w-1 10.0.0.21 worker")
    assert errors(text) == [
        "hosts[0].roles: haproxy on a control plane cannot listen on 6443 (the API server's port); use another "
        "controlPlaneEndpoint.port",
        "hosts[1].roles: haproxy on a control plane cannot listen on 6443 (the API server's port); use another "
        "controlPlaneEndpoint.port",
    ]
    assert errors(text.replace("mode: haproxy", "port: 8443, mode: haproxy")) == []


def test_load_balancer_hosts_without_haproxy_mode_are_a_warning():
    text = HEAD + "  controlPlaneEndpoint: {host: 10.0.0.100, mode: kube-vip, interface: eth0}\n" + HA3 + \
        "    - {name: lb-1, address: 10.0.0.5, roles: [load-balancer]}\n"
    errs, warns = check(text)
    assert errs == []
    assert "hosts[4].roles: hosts with role load-balancer are unused with endpoint mode kube-vip (only mode haproxy " \
           "runs haproxy+keepalived on them)" in warns


def test_a_single_load_balancer_is_a_warning():
    text = HEAD + "  controlPlaneEndpoint: {host: 10.0.0.100, mode: haproxy, interface: eth0}\n" + HA3 + \
        "    - {name: lb-1, address: 10.0.0.5, roles: [load-balancer]}\n"
    assert check(text) == ([], ["hosts[4].roles: a single load-balancer host is a single point of failure"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"0"', "upgrade.maxUnavailable: must be at least 1 (0 would never upgrade a worker)"),
        ("0", "upgrade.maxUnavailable: must be at least 1 (0 would never upgrade a worker)"),
        ("0%", "upgrade.maxUnavailable: '0%' must be between 1% and 100%"),
        ("101%", "upgrade.maxUnavailable: '101%' must be between 1% and 100%"),
        ("half", "upgrade.maxUnavailable: 'half' is neither a count (2) nor a percentage ('25%')"),
        ("-1", "upgrade.maxUnavailable: '-1' is neither a count (2) nor a percentage ('25%')"),
    ],
)
def test_max_unavailable_must_be_a_positive_count_or_percentage(value, message):
    assert errors(HEAD + f"  upgrade:\n    maxUnavailable: {value}\n" + SMALL) == [message]


@pytest.mark.parametrize("value", ["1", "3", '"2"', "25%", "100%"])
def test_max_unavailable_accepts_counts_and_percentages(value):
    assert errors(HEAD + f"  upgrade:\n    maxUnavailable: {value}\n" + SMALL) == []


def test_pod_cidr_must_hold_a_range_per_node():
    text = HEAD + "  network: {podCIDR: 10.244.0.0/24}\n" + SMALL
    assert errors(text) == ["network.podCIDR: 10.244.0.0/24 holds 1 node ranges of /24 but the inventory has 2 nodes"]


def test_service_cidr_larger_than_a_slash_12_is_refused():
    text = HEAD + "  network: {serviceCIDR: 10.0.0.0/8, podCIDR: 172.16.0.0/16}\n" + hosts(
        "cp-1 192.168.0.11 control-plane", "w-1 192.168.0.21 worker")
    assert errors(text) == ["network.serviceCIDR: 10.0.0.0/8 is too large: kubeadm and the API server accept at most "
                            "a /12 for IPv4"]


def test_an_ipv6_service_cidr_larger_than_a_slash_108_is_refused_as_kubeadm_refuses_it():
    # kubeadm's ValidateServiceSubnetSize: at most 20 host bits, whatever the family
    text = HEAD + "  network: {podCIDR: 'fd00:244::/56', serviceCIDR: 'fd00:96::/64'}\n" + hosts(
        "cp-1 fd00::11 control-plane", "w-1 fd00::21 worker")
    assert errors(text) == ["network.serviceCIDR: fd00:96::/64 is too large: kubeadm and the API server accept at most "
                            "a /108 for IPv6"]


def test_a_pod_cidr_more_than_16_bits_shorter_than_the_node_mask_is_refused_as_kubeadm_refuses_it():
    # kubeadm's ValidatePodSubnetNodeMask (PodSubnetNodeMaskMaxDiff = 16): a /7 against /24 node ranges
    text = HEAD + "  network: {podCIDR: 10.0.0.0/7, serviceCIDR: 172.16.0.0/16}\n" + hosts(
        "cp-1 192.168.0.11 control-plane", "w-1 192.168.0.21 worker")
    assert errors(text) == ["network.podCIDR: 10.0.0.0/7 is too large: kubeadm refuses a pod range more than 16 bits "
                            "shorter than the /24 node ranges (use at most a /8)"]
    assert errors(text.replace("10.0.0.0/7", "10.0.0.0/8")) == []


def test_certificate_validity_beyond_a_go_duration_is_refused():
    text = HEAD + "  pki: {caDays: 200000, leafDays: 365}\n" + SMALL
    assert errors(text) == ["pki.caDays: 200000 days is longer than kubeadm can read: its validity periods are Go "
                            "durations, at most 2562047h (106751 days)"]


def test_pod_and_service_ranges_must_be_the_same_family():
    text = HEAD + "  network: {serviceCIDR: 'fd00:96::/108'}\n" + SMALL
    assert errors(text) == ["network.serviceCIDR: podCIDR and serviceCIDR must be the same IP family"]


def test_ipv6_hosts_and_ranges_validate():
    text = HEAD + "  network: {podCIDR: 'fd00:244::/56', serviceCIDR: 'fd00:96::/108'}\n" + hosts(
        "cp-1 fd00::11 control-plane", "w-1 fd00::21 worker")
    assert errors(text) == []


def test_a_dns_name_address_needs_an_internal_ip():
    text = HEAD + hosts("cp-1 cp1.example.com control-plane", "w-1 10.0.0.21 worker")
    assert errors(text) == ["hosts[0].address: 'cp1.example.com' is not an IP address; set internalAddress to the IP "
                            "cluster traffic uses (kubeadm and etcd advertise an IP)"]
    fixed = text.replace("address: cp1.example.com", "address: cp1.example.com\n      internalAddress: 10.0.0.11")
    assert errors(fixed) == []


def test_duplicate_taints_are_refused():
    text = HEAD + SMALL + "      taints:\n        - {key: gpu, effect: NoSchedule}\n        - {key: gpu, effect: NoSchedule}\n"
    assert errors(text) == ["hosts[1].taints[1]: duplicate taint 'gpu:NoSchedule'"]


def test_a_pinned_host_key_must_look_like_one():
    text = HEAD + SMALL + "      hostKey: not-a-key\n"
    assert errors(text) == ["hosts[1].hostKey: not an SSH public key (expected 'ssh-ed25519 AAAA...')"]
    ok = HEAD + SMALL + "      hostKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2t\n"
    assert errors(ok) == []


def test_http_cni_manifests_are_refused():
    text = HEAD + "  network:\n    cni: {manifest: 'http://example.com/cni.yaml'}\n" + SMALL
    assert errors(text) == ["network.cni.manifest: the CNI manifest is applied with cluster-admin rights; fetch it over https"]


def test_mirror_url_must_be_a_url_and_offline_needs_a_bundle():
    assert errors(HEAD + "  packages: {source: mirror, mirrorURL: 'ftp//x'}\n" + SMALL) == [
        "packages.mirrorURL: 'ftp//x' is not an http(s) URL"]
    assert errors(HEAD + "  packages: {source: offline}\n" + SMALL) == [
        "packages.source: source offline needs bundleDir (a directory of .deb files)"]


def test_keyfile_encryption_needs_a_key_and_an_unused_key_is_a_warning():
    assert errors(HEAD + "  etcd:\n    backup: {encryption: keyfile}\n" + SMALL) == [
        "etcd.backup.encryption: keyfile encryption needs backup.keyFile"]
    errs, warns = check(HEAD + "  etcd:\n    backup: {keyFile: k.key}\n" + SMALL)
    assert errs == [] and "etcd.backup.keyFile: keyFile is ignored with encryption none" in warns


def test_key_file_inside_the_default_backup_directory_is_refused():
    text = HEAD + "  etcd:\n    backup: {encryption: keyfile, keyFile: .kubeforge/t/backups/k.key}\n" + SMALL
    assert errors(text) == ["etcd.backup.keyFile: the key must not live inside the backup directory (a copied backup "
                            "directory would carry its own key)"]


def test_etcd_ports_must_differ_and_election_timeout_must_cover_five_heartbeats():
    text = HEAD + "  etcd: {clientPort: 2379, peerPort: 2379, heartbeatIntervalMs: 300, electionTimeoutMs: 1000}\n" + SMALL
    assert errors(text) == [
        "etcd.peerPort: clientPort and peerPort must differ",
        "etcd.electionTimeoutMs: must be at least 5 x heartbeatIntervalMs (1500); etcd refuses to start otherwise",
    ]


def test_unsupported_etcd_minor_lists_the_supported_ones():
    assert errors(HEAD + "  etcd: {version: 3.3.27}\n" + SMALL) == [
        "etcd.version: etcd 3.3 is not supported (known minors: 3.4, 3.5, 3.6, 3.7; source: kubeforge/model/versions.yaml)"]


def test_kubelet_extra_args_are_written_without_dashes():
    text = HEAD + "  kubelet:\n    extraArgs:\n      - {name: --node-ip, value: 1.2.3.4}\n" + SMALL
    assert errors(text) == ["kubelet.extraArgs[0].name: write the flag name without dashes ('node-ip')"]


def test_an_unknown_key_suggests_the_closest_known_one():
    assert errors(HEAD + "  allowWorkloadOnControlPlanes: true\n" + SMALL) == [
        "allowWorkloadOnControlPlanes: unknown key 'allowWorkloadOnControlPlanes' "
        "(did you mean 'allowWorkloadsOnControlPlanes'?)"]


def test_a_float_version_gets_a_clear_message():
    assert errors(HEAD.replace("1.35.1", "1.35") + SMALL) == [
        "kubernetesVersion: expected a string, got the number 1.35 (write X.Y.Z or quote it)"]


def test_a_host_with_a_schema_problem_still_gets_its_other_checks():
    text = HEAD + SMALL + "      labels: {Bad Key: x}\n      colour: blue\n"
    assert errors(text) == [
        "hosts[1].labels[\"Bad Key\"]: invalid label key 'Bad Key': the name part must be 1-63 letters, digits, '-', "
        "'_' or '.', starting and ending with a letter or digit",
        "hosts[1].colour: unknown key 'colour' (expected one of: name, address, internalAddress, roles, labels, "
        "taints, ssh, hostKey)",
    ]


def test_a_missing_file_is_one_clear_problem(tmp_path):
    with pytest.raises(InventoryError) as info:
        load(tmp_path / "nope.yaml")
    assert [str(p) for p in info.value.problems] == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_a_file_that_is_not_utf8_is_one_clear_problem(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_bytes(b"apiVersion: x\nkind: \xff\n")
    with pytest.raises(InventoryError) as info:
        load(inv)
    assert [str(p) for p in info.value.problems] == [f"{inv}:2:1: not UTF-8 text"]


def test_a_byte_order_mark_is_accepted(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_bytes(b"\xef\xbb\xbf" + (HEAD + SMALL).encode())
    assert load(inv).cluster.name == "t"


def test_two_documents_in_one_file_are_refused():
    assert errors(HEAD + SMALL + "---\nkind: Cluster\n") == [
        ": invalid YAML: but found another document (expected a single document in the stream)"]


def test_hosts_may_share_a_connect_address_on_different_ssh_ports():
    text = HEAD + """\
  hosts:
    - {name: cp-1, address: 127.0.0.1, internalAddress: 10.0.0.11, roles: [control-plane], ssh: {port: 2200}}
    - {name: w-1, address: 127.0.0.1, internalAddress: 10.0.0.21, roles: [worker], ssh: {port: 2201}}
"""
    assert errors(text) == []
    same_port = text.replace("port: 2201", "port: 2200")
    assert errors(same_port) == ["hosts[1].address: duplicate address '127.0.0.1' (also hosts[0])"]


def test_an_internal_address_may_not_be_another_hosts_address():
    text = HEAD + """\
  hosts:
    - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
    - {name: w-1, address: 192.168.0.21, internalAddress: 10.0.0.11, roles: [worker]}
"""
    assert errors(text) == ["hosts[1].internalAddress: duplicate address '10.0.0.11' (also hosts[0])"]
