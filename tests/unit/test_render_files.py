"""The non-kubeadm files: etcd, node preparation, package sources, API endpoint, applied.json."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest
from ruamel.yaml import YAML

from kubeforge.model import RenderedFile
from kubeforge.model.versions import parse_kube
from kubeforge.render import DuplicateFileError, render_cluster, render_host
from kubeforge.render.context import cluster_context
from kubeforge.render.etcd import render_etcd
from kubeforge.render.packages import render_packages
from tests.golden.cases import CASES, FAKE_CA_HASH, FakeSecrets

# Every environment variable etcd 3.4 reads for the flags we set (etcd 3.5/3.6 kept the same names).
ETCD_34_VARIABLES = {
    "ETCD_NAME", "ETCD_DATA_DIR", "ETCD_LISTEN_CLIENT_URLS", "ETCD_ADVERTISE_CLIENT_URLS",
    "ETCD_LISTEN_PEER_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_LISTEN_METRICS_URLS",
    "ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE", "ETCD_INITIAL_CLUSTER_TOKEN",
    "ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_TRUSTED_CA_FILE", "ETCD_CLIENT_CERT_AUTH",
    "ETCD_PEER_CERT_FILE", "ETCD_PEER_KEY_FILE", "ETCD_PEER_TRUSTED_CA_FILE", "ETCD_PEER_CLIENT_CERT_AUTH",
    "ETCD_HEARTBEAT_INTERVAL", "ETCD_ELECTION_TIMEOUT", "ETCD_QUOTA_BACKEND_BYTES", "ETCD_SNAPSHOT_COUNT",
}


def by_path(files: list[RenderedFile]) -> dict[str, RenderedFile]:
    return {f.path: f for f in files}


def env_of(content: bytes) -> dict[str, str]:
    out = {}
    for line in content.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value.startswith('"') and value.endswith('"'), line
            out[key] = value[1:-1]
    return out


def test_etcd_env_names_the_member_its_urls_tls_and_the_whole_initial_cluster() -> None:
    c = CASES["external-kube-vip"]()
    member = c.host("etcd-2")
    env = env_of(by_path(render_host(c, member))["/etc/etcd/etcd.env"].content)
    assert set(env) == ETCD_34_VARIABLES
    assert env["ETCD_NAME"] == "etcd-2"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == f"https://{member.internal_address}:2379,https://127.0.0.1:2379"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"https://{member.internal_address}:2380"
    assert env["ETCD_INITIAL_CLUSTER"] == ",".join(f"{m.name}=https://{m.internal_address}:2380" for m in c.etcd_members)
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == c.name and env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_PEER_CERT_FILE"] == "/etc/etcd/pki/peer.crt"
    assert env["ETCD_QUOTA_BACKEND_BYTES"] == str(c.etcd.quota_backend_bytes)


def test_etcd_env_takes_the_cluster_state_and_token_as_parameters() -> None:
    c = CASES["external-kube-vip"]()
    files = render_etcd(cluster_context(c), c.host("etcd-1"), initial_cluster_state="existing", initial_cluster_token="t2")
    env = env_of(by_path(files)["/etc/etcd/etcd.env"].content)
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing" and env["ETCD_INITIAL_CLUSTER_TOKEN"] == "t2"
    with pytest.raises(ValueError):
        render_etcd(cluster_context(c), c.host("etcd-1"), initial_cluster_state="rejoin")  # type: ignore[arg-type]


def test_etcd_unit_runs_the_distribution_binary_as_etcd_with_the_env_file() -> None:
    c = CASES["external-kube-vip"]()
    unit = by_path(render_host(c, c.host("etcd-1")))["/etc/systemd/system/etcd.service"].content.decode()
    for line in ("Type=notify", "User=etcd", "EnvironmentFile=/etc/etcd/etcd.env", "ExecStart=/usr/bin/etcd",
                 "Restart=on-failure", "LimitNOFILE=65536", "TimeoutStartSec=120s"):
        assert line in unit.splitlines()


def test_only_dedicated_members_of_external_etcd_get_etcd_files() -> None:
    for case in ("external-kube-vip", "stacked-haproxy"):
        for host, files in render_cluster(CASES[case]()).items():
            has_etcd = "/etc/etcd/etcd.env" in by_path(files)
            assert has_etcd == (case == "external-kube-vip" and host.startswith("etcd-")), (case, host)


def test_nodes_get_kernel_modules_sysctls_and_a_systemd_cgroup_containerd() -> None:
    c = CASES["external-kube-vip"]()
    files = by_path(render_host(c, c.host("worker-1")))
    modules = files["/etc/modules-load.d/kubeforge.conf"].content.decode().split()
    assert "overlay" in modules and "br_netfilter" in modules
    sysctl = files["/etc/sysctl.d/99-kubeforge.conf"].content.decode()
    for key in ("net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1", "net.ipv4.ip_forward = 1"):
        assert key in sysctl
    toml = tomllib.loads(files["/etc/containerd/config.toml"].content.decode())
    cri = toml["plugins"]["io.containerd.grpc.v1.cri"]
    assert toml["version"] == 2
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    etcd_only = by_path(render_host(c, c.host("etcd-1")))
    assert "/etc/containerd/config.toml" not in etcd_only


def sources(case: str, host: str, **kw) -> dict[str, str]:
    c = CASES[case]()
    return {p: f.content.decode() for p, f in by_path(render_packages(cluster_context(c), c.host(host), **kw)).items()}


def test_upstream_sources_use_the_signed_per_minor_repository() -> None:
    s = sources("stacked-haproxy", "cp-1")
    assert ("deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /"
            in s["/etc/apt/sources.list.d/kubernetes.list"].splitlines())
    assert "/etc/apt/sources.list.d/kubeforge-debian.list" not in s
    assert "Pin: version 1.34.2-*" in s["/etc/apt/preferences.d/kubeforge-kubernetes"].splitlines()
    assert "Pin-Priority: 1001" in s["/etc/apt/preferences.d/kubeforge-kubernetes"].splitlines()


def test_mirror_sources_point_at_the_mirror_for_kubernetes_and_debian() -> None:
    s = sources("external-kube-vip", "cp-1")
    assert "deb [trusted=yes] http://10.77.4.1:8080/kubernetes/v1.34/deb/ /" in s["/etc/apt/sources.list.d/kubernetes.list"]
    assert "deb [trusted=yes] http://10.77.4.1:8080/debian/ ./" in s["/etc/apt/sources.list.d/kubeforge-debian.list"]
    etcd_host = sources("external-kube-vip", "etcd-1")
    assert set(etcd_host) == {"/etc/apt/sources.list.d/kubeforge-debian.list"}  # etcd comes from Debian


def test_offline_sources_are_only_the_local_bundle_repository() -> None:
    s = sources("single-node", "cp-1")
    assert s["/etc/apt/sources.list.d/kubeforge-bundle.list"].splitlines()[-1] == "deb [trusted=yes] file:/var/cache/kubeforge/bundle ./"
    assert "/etc/apt/sources.list.d/kubernetes.list" not in s


def test_an_upgrade_hop_switches_the_repository_minor_and_the_pin() -> None:
    s = sources("stacked-haproxy", "worker-1", version=parse_kube("1.35.1"))
    assert "/core:/stable:/v1.35/deb/ /" in s["/etc/apt/sources.list.d/kubernetes.list"]
    assert "Pin: version 1.35.1-*" in s["/etc/apt/preferences.d/kubeforge-kubernetes"]


def test_kube_vip_runs_on_every_control_plane_with_the_vip_in_arp_mode() -> None:
    c = CASES["external-kube-vip"]()
    yaml = YAML(typ="safe", pure=True)
    for cp in c.control_planes:
        f = by_path(render_host(c, cp))["/etc/kubernetes/manifests/kube-vip.yaml"]
        pod = yaml.load(f.content.decode())
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["address"] == "10.77.4.100" and env["vip_arp"] == "true"
        assert env["port"] == "6443" and env["vip_interface"] == "host0"
        kubeconfig = pod["spec"]["volumes"][0]["hostPath"]["path"]
        assert kubeconfig.endswith("super-admin.conf" if cp.name == "cp-1" else "/admin.conf")
    for w in c.workers:
        assert "/etc/kubernetes/manifests/kube-vip.yaml" not in by_path(render_host(c, w))


def test_haproxy_balances_every_control_plane_and_keepalived_orders_priorities_by_host() -> None:
    c = CASES["stacked-haproxy"]()
    lb1, lb2 = c.load_balancers
    cfg = by_path(render_host(c, lb1))["/etc/haproxy/haproxy.cfg"].content.decode()
    assert "    bind *:6443" in cfg.splitlines()
    for cp in c.control_planes:
        assert f"    server {cp.name} {cp.internal_address}:6443 check check-ssl verify none" in cfg.splitlines()
    k1 = by_path(render_host(c, lb1))["/etc/keepalived/keepalived.conf"].content.decode()
    k2 = by_path(render_host(c, lb2))["/etc/keepalived/keepalived.conf"].content.decode()
    assert "state MASTER" in k1 and "priority 150" in k1
    assert "state BACKUP" in k2 and "priority 140" in k2
    assert "10.77.4.100/32" in k1 and "virtual_router_id 51" in k1
    assert by_path(render_host(c, lb1))["/etc/keepalived/check-haproxy.sh"].mode == 0o755
    assert not any(p.startswith(("/etc/haproxy", "/etc/keepalived")) for p in by_path(render_host(c, c.host("cp-1"))))


def test_no_endpoint_files_for_a_single_control_plane() -> None:
    c = CASES["single-node"]()
    paths = by_path(render_host(c, c.host("cp-1")))
    assert not any("kube-vip" in p or "haproxy" in p or "keepalived" in p for p in paths)


def test_applied_record_lists_every_other_file_with_its_sha256_and_is_deterministic() -> None:
    c = CASES["external-kube-vip"]()
    first = render_host(c, c.host("cp-2"), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    again = render_host(c, c.host("cp-2"), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    assert [(f.path, f.content, f.mode) for f in first] == [(f.path, f.content, f.mode) for f in again]
    record = first[-1]
    assert record.path == "/etc/kubeforge/applied.json"
    data = json.loads(record.content)
    assert data["files"] == {f.path: f.sha256 for f in first[:-1]}
    assert data["cluster"] == "ext-vip" and data["kubernetesVersion"] == "1.34.2"
    assert record.content.decode() == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_pki_files_given_as_extra_files_are_placed_and_recorded() -> None:
    c = CASES["external-kube-vip"]()
    key = RenderedFile("/etc/etcd/pki/server.key", b"not a real key", mode=0o600, owner="etcd", group="etcd", secret=True, source="pki")
    files = by_path(render_host(c, c.host("etcd-1"), extra_files=[key]))
    assert files["/etc/etcd/pki/server.key"] is key
    assert "/etc/etcd/pki/server.key" in json.loads(files["/etc/kubeforge/applied.json"].content)["files"]


def test_a_path_claimed_twice_is_reported_as_a_bug() -> None:
    c = CASES["external-kube-vip"]()
    clash = RenderedFile("/etc/etcd/etcd.env", b"x")
    with pytest.raises(DuplicateFileError, match="etcd-1: /etc/etcd/etcd.env"):
        render_host(c, c.host("etcd-1"), extra_files=[clash])


def test_rendering_is_pure_the_same_inputs_give_the_same_bytes() -> None:
    for build in CASES.values():
        a = render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
        b = render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
        assert {h: [f.sha256 for f in fs] for h, fs in a.items()} == {h: [f.sha256 for f in fs] for h, fs in b.items()}


def test_ipv6_internal_addresses_are_bracketed_in_urls() -> None:
    c = CASES["external-kube-vip"]()
    v6 = [dataclasses.replace(h, internal_address=f"fd00::{i + 1}") if h.is_etcd else h for i, h in enumerate(c.hosts)]
    c6 = dataclasses.replace(c, hosts=tuple(v6))
    env = env_of(by_path(render_host(c6, c6.host("etcd-1")))["/etc/etcd/etcd.env"].content)
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://[fd00::1]:2379"
    assert cluster_context(c6).etcd_endpoints[0] == "https://[fd00::1]:2379"
