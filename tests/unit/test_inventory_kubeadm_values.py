"""A value kubeadm would refuse never reaches kubeadm: `kubeforge validate` refuses it first, exit 3,
pointing at the inventory's line and column (the simulator's kubeadm refuses the same values:
tests/unit/test_sim_kubeadm_values.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.cli.app import run

INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "single-node.yaml"


@pytest.mark.parametrize("old,new,where,what", [
    ("podCIDR: 10.244.0.0/16", "podCIDR: 100.0.0.0/7", ":10:14: network.podCIDR:", "more than 16 bits shorter"),
    ("podCIDR: 10.244.0.0/16\n    serviceCIDR: 10.96.0.0/12",
     "podCIDR: 'fd00:244::/56'\n    serviceCIDR: 'fd00:96::/64'", ":11:18: network.serviceCIDR:", "a /108 for IPv6"),
    ("  etcd:\n", "  pki: {caDays: 200000}\n  etcd:\n", ":18:17: pki.caDays:", "Go durations"),
])
def test_validate_refuses_what_kubeadm_would_refuse_with_exit_3_at_the_line(tmp_path, capsys, old, new, where, what):
    inv = tmp_path / "inventory.yaml"
    text = INVENTORY.read_text()
    assert old in text
    inv.write_text(text.replace(old, new).replace("address: 192.168.50.10", "address: 'fd00::10'" if "fd00" in new
                                                   else "address: 192.168.50.10"))
    code = run(["validate", "-i", str(inv)])
    err = capsys.readouterr().err
    assert code == 3 and f"{inv}{where}" in err and what in err and "1 problem" in err, err


def test_the_largest_values_kubeforge_accepts_render_configs_the_simulators_kubeadm_accepts(tmp_path, capsys):
    """The other side of the boundary: what validate lets through, kubeadm reads."""
    from kubeforge.inventory import load_cluster
    from kubeforge.render import render_cluster
    from tests.golden.cases import FAKE_CA_HASH, FakeSecrets
    from tests.unit.test_sim_kubeadm_config_api import validate

    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY.read_text().replace("podCIDR: 10.244.0.0/16", "podCIDR: 100.0.0.0/8")
                   .replace("serviceCIDR: 10.96.0.0/12", "serviceCIDR: 172.16.0.0/12")
                   .replace("  etcd:\n", "  pki: {caDays: 106751, leafDays: 106751}\n  etcd:\n"))
    assert run(["validate", "-i", str(inv)]) == 0
    capsys.readouterr()
    cluster = load_cluster(inv)
    files = render_cluster(cluster, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH)
    configs = [f for fs in files.values() for f in fs if f.path.startswith("/etc/kubeforge/kubeadm")]
    assert configs
    for f in configs:
        code, out = validate(tmp_path, f.content.decode(), f"v{cluster.kubernetes_version}", capsys)
        assert (code, out.strip()) == (0, "ok"), f"{f.path}: {out}"
