"""`kubeforge init` writes a commented starter inventory that validates as written, for the shapes
operators start from: one node, HA with stacked etcd (behind haproxy or kube-vip), HA with external etcd."""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from kubeforge.cli.app import run as kubeforge

SHAPES = {
    "single node": (["node-1=192.168.1.10:control-plane+worker"], "stacked", "none"),
    "HA stacked behind haproxy": ([f"cp-{i}=10.0.0.1{i}:control-plane" for i in (1, 2, 3)]
                                  + ["lb-1=10.0.0.5:load-balancer", "lb-2=10.0.0.6:load-balancer", "w-1=10.0.0.21:worker"],
                                  "stacked", "haproxy"),
    "HA stacked with kube-vip": ([f"cp-{i}=10.0.0.1{i}:control-plane+etcd" for i in (1, 2, 3)], "stacked", "kube-vip"),
    "HA external etcd": ([f"etcd-{i}=10.0.1.{i}:etcd" for i in (1, 2, 3)]
                         + [f"cp-{i}=10.0.0.1{i}:control-plane" for i in (1, 2)] + ["w-1=10.0.0.21:worker"],
                         "external", "kube-vip"),
}


def init(tmp_path, capsys, *argv: str) -> tuple[int, str, str]:
    code = kubeforge(["init", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_init_writes_an_inventory_that_validates_as_written(shape, tmp_path, capsys):
    hosts, topology, mode = SHAPES[shape]
    path = tmp_path / "inventory.yaml"
    code, out, err = init(tmp_path, capsys, "--name", "demo", *[a for h in hosts for a in ("--host", h)], "-f", str(path))
    assert code == 0, err
    assert kubeforge(["validate", "-i", str(path)]) == 0, capsys.readouterr().err
    text = path.read_text()
    doc = YAML(typ="safe").load(text)
    assert doc["metadata"]["name"] == "demo" and len(doc["spec"]["hosts"]) == len(hosts)
    assert doc["spec"]["etcd"]["topology"] == topology and doc["spec"]["controlPlaneEndpoint"]["mode"] == mode
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 8  # commented for a first reader


def test_init_takes_the_endpoint_given_and_marks_a_guessed_one(tmp_path, capsys):
    hosts = [a for i in (1, 2, 3) for a in ("--host", f"cp-{i}=10.0.0.1{i}:control-plane")]
    assert init(tmp_path, capsys, *hosts, "--endpoint", "10.0.0.100", "-f", str(tmp_path / "a.yaml"))[0] == 0
    assert "host: 10.0.0.100" in (tmp_path / "a.yaml").read_text()
    assert init(tmp_path, capsys, *hosts, "-f", str(tmp_path / "b.yaml"))[0] == 0
    guessed = (tmp_path / "b.yaml").read_text()
    assert "CHANGE IT" in guessed and "host: 10.0.0.250" in guessed


def test_init_never_overwrites_an_inventory_without_force(tmp_path, capsys):
    path = tmp_path / "inventory.yaml"
    path.write_text("mine\n")
    code, _, err = init(tmp_path, capsys, "--host", "n=10.0.0.1:control-plane", "-f", str(path))
    assert code == 3 and "already exists" in err and path.read_text() == "mine\n"
    assert init(tmp_path, capsys, "--host", "n=10.0.0.1:control-plane", "-f", str(path), "--force")[0] == 0


@pytest.mark.parametrize(("spec", "says"), [
    ("cp-1", "expected NAME=ADDRESS:ROLES"),
    ("cp-1=10.0.0.1:master", "'master' is not a role"),
    ("CP_1=10.0.0.1:control-plane", "is not a host name"),
])
def test_a_bad_host_is_one_usage_error_and_no_file(spec, says, tmp_path, capsys):
    code, _, err = init(tmp_path, capsys, "--host", spec, "-f", str(tmp_path / "x.yaml"))
    assert code == 2 and says in err and not (tmp_path / "x.yaml").exists()


def test_hosts_the_inventory_rules_refuse_leave_no_file_behind(tmp_path, capsys):
    code, _, err = init(tmp_path, capsys, "--host", "a=10.0.0.1:control-plane", "--host", "b=10.0.0.1:worker",
                        "-f", str(tmp_path / "x.yaml"))
    assert code == 3 and "10.0.0.1" in err
    assert list(tmp_path.iterdir()) == []


def test_without_hosts_and_without_a_terminal_init_asks_for_host_flags(tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = init(tmp_path, capsys, "-f", str(tmp_path / "x.yaml"))
    assert code == 2 and "--host NAME=ADDRESS:ROLES" in err


def test_on_a_terminal_init_asks_for_the_hosts_one_per_line(tmp_path, capsys, monkeypatch):
    import io

    answers = io.StringIO("cp-1=10.0.0.11:control-plane+worker\nw-1=10.0.0.21:worker\n\n")
    answers.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", answers)
    path = tmp_path / "inventory.yaml"
    code, out, err = init(tmp_path, capsys, "-f", str(path), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["file"] == str(path) and "host 3: " in err  # prompts never on stdout
    hosts = YAML(typ="safe").load(path.read_text())["spec"]["hosts"]
    assert [h["name"] for h in hosts] == ["cp-1", "w-1"] and "NAME=ADDRESS:ROLES" in err


def test_the_readme_init_line_writes_an_inventory_that_validates(tmp_path, capsys, monkeypatch):
    """The `kubeforge init` line of the README's "On your own servers", run as written (the rest of
    that walk runs on the lab: tests/integration/test_kubeconfig_lab.py)."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("kubeforge init "))
    argv = shlex.split(line.split("#", 1)[0])[2:]  # after "kubeforge init"
    monkeypatch.chdir(tmp_path)
    code, out, err = init(tmp_path, capsys, *argv)
    assert code == 0, err
    assert kubeforge(["validate", "-i", "inventory.yaml"]) == 0, capsys.readouterr().err
    assert YAML(typ="safe").load((tmp_path / "inventory.yaml").read_text())["metadata"]["name"] == "prod"
