"""The simulator's YAML subset reader and its `kubeadm config validate` field lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.sim.kubesim import kconfig, yamlish
from tests.sim.kubesim.host import SimError

REFERENCE = Path("/work/shared/reference/kubeadm-v1beta4-defaults")
INVENTORIES = sorted((Path(__file__).resolve().parents[2] / "inventories").glob("*.yaml"))


def _ruamel(text: str) -> list:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]


@pytest.mark.parametrize("path", sorted(REFERENCE.glob("*.yaml")) + INVENTORIES, ids=lambda p: p.name)
def test_reader_agrees_with_ruamel_on_real_documents(path: Path) -> None:
    text = path.read_text()
    assert yamlish.load_all(text) == _ruamel(text)


def test_reader_handles_block_scalars_flow_collections_and_same_indent_sequences() -> None:
    text = ("a:\n- x: 1\n  y: [1, \"a b\", {c: d}]\n- |\n  hello\n   world\n"
            "b: >-\n  folded\n  text\nc: \"multi\n  line\"\nd: 'it''s'\ne: ~  # comment\n")
    assert yamlish.load(text) == _ruamel(text)[0]


def test_reader_handles_multi_line_quoted_scalars_with_escapes_like_crd_descriptions() -> None:
    text = ("spec:\n  description: 'first line with it''s quote\n    and a ''/^x/'' pattern''\n    end'\n"
            "  other: \"a \\\"quoted\\\" word\n    \\ then \\n a tab\\there \\u00e9\"\n  after: 1\n")
    assert yamlish.load(text) == _ruamel(text)[0]


def test_dump_reads_back_to_the_same_value() -> None:
    value = {"a": [{"b": "1.34", "c": None, "d": True, "e": ""}, "x: y", []], "f": {}, "g": "#no"}
    assert yamlish.load(yamlish.dump(value)) == value == _ruamel(yamlish.dump(value))[0]


def test_reader_refuses_anchors_instead_of_guessing() -> None:
    with pytest.raises(yamlish.YamlError):
        yamlish.load("a: &x 1\nb: *x\n")


@pytest.mark.parametrize("name", ["init-defaults-with-component-configs", "join-defaults", "reset-defaults",
                                  "upgrade-defaults"])
def test_validator_accepts_what_real_kubeadm_prints(name: str) -> None:
    docs = kconfig.parse((REFERENCE / f"{name}.yaml").read_text())
    assert docs["_apiVersion"]["value"] == "kubeadm.k8s.io/v1beta4"


def test_validator_rejects_an_unknown_field_naming_its_path() -> None:
    text = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  nmae: cp-1\n"
    with pytest.raises(SimError, match='unknown field "nodeRegistration.nmae"'):
        kconfig.parse(text)


def test_validator_rejects_map_extra_args_in_v1beta4_but_accepts_them_in_v1beta3() -> None:
    body = "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    audit-log-path: /var/log/a\n"
    with pytest.raises(SimError, match="cannot unmarshal dict"):
        kconfig.parse("apiVersion: kubeadm.k8s.io/v1beta4\n" + body)
    assert "ClusterConfiguration" in kconfig.parse("apiVersion: kubeadm.k8s.io/v1beta3\n" + body)


def test_validator_knows_upgrade_configuration_only_in_v1beta4() -> None:
    with pytest.raises(SimError, match='no kind "UpgradeConfiguration" is registered for version'):
        kconfig.parse("apiVersion: kubeadm.k8s.io/v1beta3\nkind: UpgradeConfiguration\n")


def test_every_kubeadm_config_kubeforge_renders_is_valid_for_the_simulator() -> None:
    from kubeforge.render import render_cluster
    from tests.golden.cases import CASES, FAKE_CA_HASH, FakeSecrets

    checked = 0
    for _, build in sorted(dict(CASES).items()):
        for files in render_cluster(build(), secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH).values():
            for f in files:
                if f.path.startswith("/etc/kubeforge/kubeadm-"):
                    text = f.content.decode()
                    assert yamlish.load_all(text) == _ruamel(text), f.path
                    kconfig.parse(text, f.path)
                    checked += 1
    assert checked > 0
