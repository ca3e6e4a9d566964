"""The simulator's kubeadm enforces each minor's config API: 1.37 refuses kubeadm.k8s.io/v1beta3 (removed
by kubernetes/kubernetes#136016) with kubeadm's own wording, 1.36 still reads it, and every minor reads
the v1beta4 configuration kubeforge renders."""

from __future__ import annotations

import dataclasses

import pytest

from kubeforge.model.versions import parse_kube
from kubeforge.render import render_cluster
from tests.golden.cases import CASES, FAKE_CA_HASH, FakeSecrets
from tests.sim.kubesim import kubeadm

V1BETA3_INIT = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
nodeRegistration:
  name: cp-1
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.37.1
"""


def validate(tmp_path, text: str, version: str, capsys) -> tuple[int, str]:
    cfg = tmp_path / "kubeadm.yaml"
    cfg.write_text(text)
    code = kubeadm.main(["config", "validate", "--config", str(cfg)], version)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_kubeadm_1_37_refuses_a_v1beta3_config_like_the_real_one(tmp_path, capsys):
    code, out = validate(tmp_path, V1BETA3_INIT, "v1.37.1", capsys)
    assert code != 0
    assert 'your configuration file uses an old API spec: "kubeadm.k8s.io/v1beta3" (kind: "InitConfiguration")' in out
    assert "Please use kubeadm v1.36 instead and run 'kubeadm config migrate" in out


def test_kubeadm_1_36_still_reads_v1beta3(tmp_path, capsys):
    code, out = validate(tmp_path, V1BETA3_INIT.replace("v1.37.1", "v1.36.5"), "v1.36.5", capsys)
    assert (code, out.strip()) == (0, "ok")


@pytest.mark.parametrize("version", ["1.35.1", "1.36.5", "1.37.1"])
def test_every_kubeadm_config_kubeforge_renders_is_accepted_by_that_minors_kubeadm(tmp_path, capsys, version):
    c = dataclasses.replace(CASES["external-kube-vip"](), kubernetes_version=parse_kube(version))
    files = render_cluster(c, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    checked = 0
    for f in (f for fs in files.values() for f in fs if f.path.startswith("/etc/kubeforge/kubeadm")):
        code, out = validate(tmp_path, f.content.decode(), f"v{version}", capsys)
        assert (code, out.strip()) == (0, "ok"), f"{f.path}: {out}"
        checked += 1
    assert checked >= 2
