"""``kubeforge validate`` and ``kubeforge schema`` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge.inventory import json_schema, load
from kubeforge.inventory.summary import summary

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubeforge", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_validate_prints_a_one_line_summary_and_exits_0():
    proc = run("validate", "-i", "inventories/ha-stacked-haproxy.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "prod-stacked: Kubernetes 1.36.5; 3 control-plane, 3 worker, 2 load-balancer; etcd stacked, 3.6.9 from kubeadm 1.36 "
        "(3 members); endpoint haproxy 192.168.20.100:6443"
    ]


def test_validate_prints_warnings_on_stderr():
    proc = run("validate", "-i", "inventories/single-node.yaml")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "inventories/single-node.yaml:19:15: etcd.topology: warning: a single etcd member has no fault tolerance; "
        "use 3 for production"
    ]


def test_validate_of_a_missing_file_is_exit_3_without_a_traceback():
    proc = run("validate", "-i", "nope/missing.yaml")
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == "nope/missing.yaml: no such file"
    assert "Traceback" not in proc.stderr


def test_every_command_help_shows_an_example():
    for cmd in ("validate", "schema"):
        proc = run(cmd, "--help")
        assert proc.returncode == 0 and "Example: kubeforge " + cmd in proc.stdout


def test_schema_command_prints_a_draft_2020_12_schema():
    proc = run("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata", "spec"}


def test_schema_describes_fields_with_their_yaml_names_and_defaults():
    defs = json_schema()["$defs"]
    net = defs["NetworkDoc"]["properties"]
    assert net["podCIDR"]["default"] == "10.244.0.0/16"
    assert defs["HostDoc"]["properties"]["roles"]["items"]["enum"] == ["control-plane", "etcd", "worker", "load-balancer"]
    assert defs["EndpointDoc"]["properties"]["mode"]["description"]
    assert defs["SshDoc"]["properties"]["port"]["maximum"] == 65535


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "inventories").glob("*.yaml")))
def test_every_example_inventory_satisfies_the_published_schema(name):
    import jsonschema

    from kubeforge.inventory.yamldoc import parse

    data = parse((REPO / "inventories" / name).read_text()).data
    jsonschema.Draft202012Validator(json_schema()).validate(json.loads(json.dumps(data, default=str)))


def test_summary_names_roles_topology_and_endpoint():
    c = load(REPO / "inventories" / "ha-external-etcd.yaml").cluster
    assert summary(c) == ("prod-ha: Kubernetes 1.35.1; 3 control-plane, 3 etcd, 3 worker; etcd external 3.5.21 "
                          "(3 members); endpoint kube-vip 192.168.10.100:6443")
