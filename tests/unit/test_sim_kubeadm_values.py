"""The simulator's kubeadm checks config *values* as kubeadm's validation does (tests/sim/kubesim/kvalues.py):
subnets, durations, enum values, the config API a minor reads, and flags mixed with --config."""

from __future__ import annotations

import pytest

from tests.sim import testing as T
from tests.unit.test_sim_kubeadm_config_api import validate as config_validate

CLUSTER = """apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.2
networking:
  podSubnet: {pod}
  serviceSubnet: {svc}
  dnsDomain: cluster.local
certificateValidityPeriod: {leaf}
{extra}"""
INIT = """apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: {ttl}
nodeRegistration:
  name: cp-1
  imagePullPolicy: {policy}
---
"""


def config(pod="10.244.0.0/16", svc="10.96.0.0/12", leaf="8760h0m0s", ttl="24h0m0s", policy="IfNotPresent",
           extra="", proxy_mode="iptables") -> str:
    return (INIT.format(ttl=ttl, policy=policy) + CLUSTER.format(pod=pod, svc=svc, leaf=leaf, extra=extra)
            + f"---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: {proxy_mode}\n")


def validate(tmp_path, text: str, capsys, version: str = "v1.34.2") -> tuple[int, str]:
    return config_validate(tmp_path, text, version, capsys)


def test_a_config_with_valid_values_is_accepted(tmp_path, capsys):
    assert validate(tmp_path, config(), capsys) == (0, "ok\n")


@pytest.mark.parametrize("kw,message", [
    ({"svc": "10.128.0.0/10"}, 'networking.serviceSubnet: Invalid value: "10.128.0.0/10": specified service subnet is '
                               'too large; for 32-bit addresses, the mask must be >= 12'),
    ({"svc": "fd00:10:96::/64", "pod": "fd00:10:244::/56"},
     'networking.serviceSubnet: Invalid value: "fd00:10:96::/64": specified service subnet is too large; for 128-bit '
     'addresses, the mask must be >= 108'),
    ({"svc": "10.96.0.0/29"}, 'subnet with 8 address(es) is too small, the minimum is 10'),
    ({"svc": "10.96.0.0/12c"}, 'networking.serviceSubnet: Invalid value: "10.96.0.0/12c": couldn\'t parse subnet'),
    ({"pod": "10.0.0.0/7"}, 'networking.podSubnet: Invalid value: "10.0.0.0/7": pod subnet mask (7) and node-mask (24) '
                            'difference is greater than 16'),
    ({"pod": "10.244.0.0/25"}, 'the size of pod subnet with mask 25 is smaller than the size of node subnet with mask 24'),
    ({"leaf": "365d"}, 'certificateValidityPeriod: time: unknown unit "d" in duration "365d"'),
    ({"leaf": "8760"}, 'time: missing unit in duration "8760"'),
    ({"leaf": "2562048h"}, 'time: invalid duration "2562048h"'),
    ({"ttl": "1d"}, 'bootstrapTokens[0].ttl: time: unknown unit "d" in duration "1d"'),
    ({"policy": "Sometimes"}, 'nodeRegistration.imagePullPolicy: Invalid value: "Sometimes": invalid pull policy'),
    ({"extra": "encryptionAlgorithm: RSA-1024\n"}, 'Invalid encryption algorithm "RSA-1024"'),
    ({"proxy_mode": "userspace"}, 'KubeProxyConfiguration.mode: Invalid value: "userspace": must be iptables, ipvs, '
                                  'nftables or blank'),
])
def test_a_value_kubeadm_refuses_is_refused_with_its_wording(tmp_path, capsys, kw, message):
    code, out = validate(tmp_path, config(**kw), capsys)
    assert code == 1 and message in out, out


def test_the_node_mask_follows_the_controller_managers_flag_and_allocate_node_cidrs_false_skips_it(tmp_path, capsys):
    cm = 'controllerManager:\n  extraArgs:\n  - name: node-cidr-mask-size-ipv4\n    value: "26"\n'
    assert validate(tmp_path, config(pod="10.244.0.0/25", extra=cm), capsys) == (0, "ok\n")
    off = 'controllerManager:\n  extraArgs:\n  - name: allocate-node-cidrs\n    value: "false"\n'
    assert validate(tmp_path, config(pod="10.0.0.0/7", extra=off), capsys) == (0, "ok\n")


def test_several_refused_values_are_reported_together_like_an_aggregate(tmp_path, capsys):
    code, out = validate(tmp_path, config(svc="10.128.0.0/10", policy="Sometimes"), capsys)
    assert code == 1 and out.startswith("error: [") and "serviceSubnet" in out and "imagePullPolicy" in out


def test_v1beta4_is_read_from_kubeadm_1_31_and_not_before(tmp_path, capsys):
    code, out = validate(tmp_path, config(), capsys, version="v1.30.4")
    assert code == 1 and 'no kind "InitConfiguration" is registered for version "kubeadm.k8s.io/v1beta4"' in out
    assert validate(tmp_path, config(), capsys, version="v1.31.0")[0] == 0


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESIM_WAIT_SECONDS", "1")
    return T.make_machine(str(tmp_path / "cp-1"), "cp-1", "v1.34.2")


@pytest.mark.parametrize("argv,mixed", [
    (["init", "--token", "abcdef.0123456789abcdef"], "[token]"),
    (["init", "--apiserver-advertise-address=10.0.0.1", "--kubernetes-version", "v1.34.2"],
     "[apiserver-advertise-address kubernetes-version]"),
    (["join", "--control-plane"], "[control-plane]"),
    (["join", "--discovery-token-ca-cert-hash", "sha256:00"], "[discovery-token-ca-cert-hash]"),
])
def test_init_and_join_refuse_flags_mixed_with_config(tmp_path, machine, argv, mixed):
    cfg = tmp_path / "kubeadm.yaml"
    cfg.write_text(config())
    rc, _, err = T.run("kubeadm", machine, [*argv, "--config", str(cfg)], "v1.34.2")
    assert rc == 1 and f"can not mix '--config' with arguments {mixed}" in err, err


def test_flags_kubeadm_allows_beside_config_are_not_refused_as_mixed(tmp_path, machine):
    cfg = tmp_path / "kubeadm.yaml"
    cfg.write_text(config())
    rc, _, err = T.run("kubeadm", machine, ["init", "--config", str(cfg), "--upload-certs", "--node-name", "cp-1",
                                            "--ignore-preflight-errors=all", "--skip-phases", "addon/kube-proxy"],
                       "v1.34.2")
    assert "can not mix" not in err


def test_the_simulators_config_api_windows_agree_with_kubeforges_version_data(tmp_path, capsys):
    """Each minor kubeforge knows reads exactly the kubeadm config APIs versions.yaml lists for it (the
    simulator keeps its own table: it must not read kubeforge's data)."""
    from kubeforge.model.versions import known_kube_minors, kubeadm_config_apis, parse_kube

    for minor in known_kube_minors():
        version = parse_kube(f"{minor}.0")
        for api in ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"):
            text = f"apiVersion: {api}\nkind: ClusterConfiguration\nkubernetesVersion: v{minor}.0\n"
            accepted = validate(tmp_path, text, capsys, version=f"v{minor}.0")[0] == 0
            assert accepted == (api in kubeadm_config_apis(version)), (minor, api)
