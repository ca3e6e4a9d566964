"""kubeadm configs: valid YAML, only fields of their API version, and the values the design asks for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kubeforge.inventory import load_cluster
from kubeforge.model import Secret
from kubeforge.model.versions import parse_kube
from kubeforge.render import render_cluster, render_host
from kubeforge.render.context import cluster_context
from kubeforge.render.kubeadm import render_init, render_join, render_upgrade
from tests.golden.cases import CASES, FAKE_CA_HASH, FakeSecrets
from tests.unit.kubeadm_api_fields import ALLOWED, V1BETA4, field_paths, unknown_fields

REFERENCE = Path("/work/shared/reference/kubeadm-v1beta4-defaults")
_yaml = YAML(typ="safe", pure=True)


def docs_of(content: bytes) -> list[dict]:
    return [d for d in _yaml.load_all(content.decode()) if d is not None]


INVENTORIES = sorted((Path(__file__).resolve().parents[2] / "inventories").glob("*.yaml"))
BUILDERS = dict(CASES) | {f"inventory-{p.stem}": (lambda p=p: load_cluster(p)) for p in INVENTORIES}


def kubeadm_docs() -> list[tuple[str, str, dict]]:
    out = []
    for case, build in sorted(BUILDERS.items()):
        for host, files in render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).items():
            for f in files:
                if f.path.startswith("/etc/kubeforge/kubeadm-"):
                    out += [(case, f"{host}:{f.path}", d) for d in docs_of(f.content)]
    return out


ALL_DOCS = kubeadm_docs()


def doc(cluster, host_name: str, kind: str) -> dict:
    files = render_host(cluster, cluster.host(host_name), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    for f in files:
        if f.path.startswith("/etc/kubeforge/kubeadm-"):
            for d in docs_of(f.content):
                if d["kind"] == kind:
                    return d
    raise AssertionError(f"{host_name} has no {kind}")


def test_every_rendered_yaml_file_parses_back() -> None:
    parsed = 0
    for build in BUILDERS.values():
        for files in render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).values():
            for f in files:
                if f.path.endswith((".yaml", ".yml")):
                    assert docs_of(f.content), f.path
                    parsed += 1
    assert parsed > 20


def test_every_kubeadm_document_has_only_fields_of_its_api_version() -> None:
    seen = {(d["apiVersion"], d["kind"]) for _, _, d in ALL_DOCS}
    assert (V1BETA4, "InitConfiguration") in seen and (V1BETA4, "UpgradeConfiguration") in seen
    assert not any(api == "kubeadm.k8s.io/v1beta3" for api, _ in seen)  # every known minor reads v1beta4
    for case, where, d in ALL_DOCS:
        assert not unknown_fields(d), f"{case} {where} {d['kind']}: {sorted(unknown_fields(d))}"


def test_v1beta4_documents_never_carry_map_style_extra_args() -> None:
    checked = 0
    for case, where, d in ALL_DOCS:
        if d["apiVersion"] != V1BETA4:
            continue
        for path in field_paths(d):
            if path.endswith("xtraArgs"):
                value = _lookup(d, path)
                assert isinstance(value, list), f"{case} {where}: {path} is not a list"
                assert all(set(item) == {"name", "value"} for item in value)
                checked += 1
    assert checked > 0


def _lookup(d: dict, path: str):
    node = d
    for part in path.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("name", ["init-defaults.yaml", "join-defaults.yaml", "upgrade-defaults.yaml"])
def test_field_lists_accept_everything_real_kubeadm_prints_for_v1beta4(name: str) -> None:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data missing at {REFERENCE}")
    for d in docs_of((REFERENCE / name).read_bytes()):
        if d["apiVersion"].startswith("kubeadm.k8s.io/"):
            assert not unknown_fields(d), f"{name} {d['kind']}: {sorted(unknown_fields(d))}"


def test_field_lists_reject_a_v1beta3_field_in_a_v1beta4_document() -> None:
    d = {"apiVersion": V1BETA4, "kind": "ClusterConfiguration", "apiServer": {"timeoutForControlPlane": "4m0s"}}
    assert unknown_fields(d) == {"apiServer.timeoutForControlPlane"}
    assert (V1BETA4, "ClusterConfiguration") in ALLOWED


@pytest.mark.parametrize("version", ["1.35.9", "1.36.5", "1.37.1"])
def test_every_supported_minor_renders_v1beta4_and_only_v1beta4(version: str) -> None:
    c = dataclasses.replace(CASES["external-kube-vip"](), kubernetes_version=parse_kube(version))
    apis = {d["apiVersion"] for files in render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).values()
            for f in files if f.path.endswith(".yaml") for d in docs_of(f.content)
            if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("kubeadm.k8s.io/")}
    assert apis == {V1BETA4}
    assert render_upgrade(cluster_context(c), c.first_control_plane) is not None


def test_cluster_configuration_points_at_the_external_etcd_members_and_the_endpoint() -> None:
    c = CASES["external-kube-vip"]()
    cc = doc(c, "cp-1", "ClusterConfiguration")
    assert cc["kubernetesVersion"] == "v1.34.2"
    assert cc["controlPlaneEndpoint"] == "10.77.4.100:6443"
    assert cc["etcd"]["external"]["endpoints"] == [f"https://{m.internal_address}:2379" for m in c.etcd_members]
    assert cc["etcd"]["external"]["certFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    sans = cc["apiServer"]["certSANs"]
    assert sans[0] == "10.77.4.100"
    for cp in c.control_planes:
        assert cp.name in sans and cp.address in sans
    assert cc["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12", "dnsDomain": "cluster.local"}


def test_stacked_etcd_uses_kubeadm_local_etcd_with_the_model_data_dir() -> None:
    cc = doc(CASES["stacked-haproxy"](), "cp-1", "ClusterConfiguration")
    assert cc["etcd"] == {"local": {"dataDir": "/var/lib/etcd"}}


def test_init_configuration_carries_token_address_taint_and_node_ip() -> None:
    c = CASES["external-kube-vip"]()
    init = doc(c, "cp-1", "InitConfiguration")
    assert init["bootstrapTokens"][0]["token"] == FakeSecrets().bootstrap_token.reveal()
    assert init["certificateKey"] == FakeSecrets().certificate_key.reveal()
    assert init["localAPIEndpoint"]["advertiseAddress"] == c.host("cp-1").internal_address
    reg = init["nodeRegistration"]
    assert reg["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert reg["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert {"name": "node-ip", "value": c.host("cp-1").internal_address} in reg["kubeletExtraArgs"]
    kubelet = doc(c, "cp-1", "KubeletConfiguration")
    assert kubelet["cgroupDriver"] == "systemd" and kubelet["maxPods"] == 110


def test_control_planes_that_run_workloads_get_no_control_plane_taint() -> None:
    init = doc(CASES["single-node"](), "cp-1", "InitConfiguration")
    assert init["nodeRegistration"]["taints"] == []


def test_join_configuration_for_a_control_plane_advertises_its_internal_address() -> None:
    c = CASES["external-kube-vip"]()
    join = doc(c, "cp-2", "JoinConfiguration")
    assert join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == c.host("cp-2").internal_address
    assert join["controlPlane"]["certificateKey"] == FakeSecrets().certificate_key.reveal()
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "10.77.4.100:6443",
        "token": FakeSecrets().bootstrap_token.reveal(),
        "caCertHashes": [FAKE_CA_HASH],
    }


def test_join_configuration_for_a_worker_has_no_control_plane_section_and_keeps_host_taints() -> None:
    join = doc(CASES["v1beta4-extras"](), "worker-1", "JoinConfiguration")
    assert "controlPlane" not in join
    assert join["nodeRegistration"]["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    args = {a["name"]: a["value"] for a in join["nodeRegistration"]["kubeletExtraArgs"]}
    # only labels the kubelet may set on itself go to --node-labels; "team" is applied later with kubectl
    assert args == {"node-ip": "10.0.0.33", "node-labels": "node.kubernetes.io/pool=gpu", "v": "2"}


def test_files_holding_the_token_are_secret_and_private() -> None:
    c = CASES["external-kube-vip"]()
    ctx = cluster_context(c)
    for f in (render_init(ctx, c.host("cp-1"), FakeSecrets()), render_join(ctx, c.host("worker-1"), FakeSecrets(), FAKE_CA_HASH)):
        assert f.secret and f.mode == 0o600
        assert FakeSecrets().bootstrap_token.reveal().encode() in f.content
        assert FakeSecrets().bootstrap_token.reveal() not in repr(f)


def test_without_secrets_the_init_and_join_files_are_left_out_rather_than_filled_with_placeholders() -> None:
    c = CASES["external-kube-vip"]()
    paths = {f.path for f in render_host(c, c.host("cp-1"))}
    assert "/etc/kubeforge/kubeadm-init.yaml" not in paths
    assert "/etc/kubeforge/kubeadm-upgrade.yaml" in paths
    worker_paths = {f.path for f in render_host(c, c.host("worker-1"), secrets=FakeSecrets())}
    assert "/etc/kubeforge/kubeadm-join.yaml" not in worker_paths  # no CA hash: discovery cannot be pinned


def test_upgrade_configuration_targets_the_given_hop_and_leaves_external_etcd_alone() -> None:
    c = CASES["external-kube-vip"]()
    files = render_host(c, c.host("cp-2"), kubernetes_version=parse_kube("1.35.1"))
    up = next(docs_of(f.content)[0] for f in files if f.path.endswith("kubeadm-upgrade.yaml"))
    assert up["apply"]["kubernetesVersion"] == "v1.35.1"
    assert up["apply"]["etcdUpgrade"] is False and up["node"]["etcdUpgrade"] is False


def test_secret_values_are_only_in_files_marked_secret() -> None:
    token = FakeSecrets().bootstrap_token.reveal().encode()
    key = FakeSecrets().certificate_key.reveal().encode()
    for build in CASES.values():
        for files in render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).values():
            for f in files:
                if token in f.content or key in f.content:
                    assert f.secret and f.mode == 0o600, f.path


def test_a_custom_secret_reaches_the_config_only_through_reveal() -> None:
    class Other:
        bootstrap_token = Secret("zyxwvu.9876543210zyxwvu")
        certificate_key = Secret("1" * 64)

    c = CASES["single-node"]()
    init = next(f for f in render_host(c, c.host("cp-1"), secrets=Other()) if f.path.endswith("init.yaml"))
    assert b"zyxwvu.9876543210zyxwvu" in init.content and b"***" not in init.content


def test_the_bootstrap_token_ttl_follows_the_local_secret_store() -> None:
    from datetime import timedelta

    @dataclasses.dataclass(frozen=True)
    class WithTtl(FakeSecrets):
        bootstrap_token_ttl: timedelta = timedelta(hours=2)

    c = CASES["single-node"]()
    init = next(f for f in render_host(c, c.host("cp-1"), secrets=WithTtl()) if f.path.endswith("init.yaml"))
    assert docs_of(init.content)[0]["bootstrapTokens"][0]["ttl"] == "2h0m0s"
    assert doc(c, "cp-1", "InitConfiguration")["bootstrapTokens"][0]["ttl"] == "24h0m0s"
