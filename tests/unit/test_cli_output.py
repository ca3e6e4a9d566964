"""Every command, found by walking the typer app: one --output flag meaning table|json|yaml; on a bad
inventory path exit 3 with a parseable error object on stdout (json and yaml) and the human message on
stderr; parseable documents on success where no host is needed. Also the conventions around it:
-v anywhere on the line, usage errors as error objects, help without <bool> metavars, NO_COLOR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kubeforge.cli.app import build_command, run

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "single-node.yaml"
# Required options other than -i, with values that pass their own checks.
REQUIRED = {"--to": {"etcd upgrade": "3.6.5", "": "1.35.1"}, "--from": {"": "latest"}, "--ca": {"": "etcd"}}
NO_INVENTORY = {"version", "schema", "init", "bundle create", "bundle verify"}  # bundle: a directory, not an inventory


def leaves(cmd=None, path=()):
    cmd = cmd or build_command()
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from leaves(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(leaves())


def option(cmd, name: str):
    return next((p for p in cmd.params if name in getattr(p, "opts", ())), None)


def parse(text: str, fmt: str):
    return json.loads(text) if fmt == "json" else YAML(typ="safe", pure=True).load(text)


def kf(capsys, *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def required_args(path: str, cmd) -> list[str]:
    args = []
    for flag, values in REQUIRED.items():
        p = option(cmd, flag)
        if p is not None and p.required:
            args += [flag, values.get(path, values[""])]
    return args


def test_the_walk_finds_every_command_of_the_readme():
    assert {"validate", "schema", "init", "render", "certs check", "facts", "preflight", "plan up", "plan upgrade",
            "up", "upgrade", "reset", "kubeconfig", "version", "etcd status", "etcd backup", "etcd install",
            "etcd restore", "etcd members", "etcd upgrade"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_the_one_output_flag(path):
    p = option(COMMANDS[path], "--output")
    assert p is not None and "-o" in p.opts, f"{path} has no -o/--output"
    # click's Choice holds the values (typer 0.16) or the enum members (later typers)
    choices = (getattr(p, "type_descriptor", None) or p.type).choices
    assert [getattr(c, "value", c) for c in choices] == ["table", "json", "yaml"]
    assert getattr(p.default, "value", p.default) == "table"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("path", sorted(set(COMMANDS) - NO_INVENTORY))
def test_a_missing_inventory_exits_3_with_an_error_object(path, fmt, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-inventory.yaml"
    code, out, err = kf(capsys, *path.split(), "-i", str(missing), *required_args(path, COMMANDS[path]), "-o", fmt)
    assert code == 3, err
    error = parse(out, fmt)["error"]
    assert error["exit_code"] == 3 and error["category"] == "inventory"
    assert set(error) >= {"exit_code", "category", "message", "hint", "log"}
    assert str(missing) in "".join(error["problems"]) and str(missing) in err  # the human message: stderr


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_reads_that_need_no_host_print_one_document(fmt, capsys, tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_bytes(INVENTORY.read_bytes())
    cases = {
        ("validate", "-i", str(inv)): lambda d: d["cluster"] == "single" and d["valid"] is True,
        ("schema",): lambda d: d["type"] == "object" and "spec" in d["properties"],
        ("version",): lambda d: "kubeforge" in d,
        ("render", "-i", str(inv), "-d", str(tmp_path / "out")): lambda d: d["hosts"][0]["host"] == "node-1",
        ("certs", "check", "-i", str(inv), "--store-only"): lambda d: d["cluster"] == "single" and d["certificates"],
        ("init", "--host", "n-1=10.0.0.1:control-plane+worker", "-f", str(tmp_path / f"new-{fmt}.yaml")):
            lambda d: d["file"].endswith(f"new-{fmt}.yaml"),
    }
    for argv, check in cases.items():
        code, out, err = kf(capsys, *argv, "-o", fmt)
        assert code == 0, (argv, err)
        assert check(parse(out, fmt)), (argv, out)


def test_a_failure_after_a_result_prints_the_result_and_the_error_in_one_document(capsys, tmp_path):
    from datetime import timedelta

    inv = tmp_path / "inventory.yaml"
    inv.write_bytes(INVENTORY.read_bytes())
    assert kf(capsys, "render", "-i", str(inv), "-o", "json")[0] == 0
    code, out, _ = kf(capsys, "certs", "check", "-i", str(inv), "--store-only", "--within-days", str(timedelta(days=4000).days),
                      "-o", "json")
    doc = json.loads(out)
    assert code == 9 and doc["error"]["exit_code"] == 9 and doc["error"]["category"] == "certs"
    assert all(c["expiring"] for c in doc["certificates"])


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_usage_error_is_an_error_object_with_exit_2(fmt, capsys):
    code, out, err = kf(capsys, "validate", "--no-such-flag", "-o", fmt)
    assert code == 2 and parse(out, fmt)["error"]["category"] == "usage" and "--no-such-flag" in err


def test_json_keeps_stdout_for_the_document_and_table_prints_for_people(capsys, tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_bytes(INVENTORY.read_bytes())
    code, out, err = kf(capsys, "init", "--host", "a=10.0.0.1:control-plane", "-f", str(tmp_path / "a.yaml"), "-o", "json")
    assert code == 0 and json.loads(out)["cluster"] == "my-cluster" and "wrote" not in out
    code, out, _ = kf(capsys, "validate", "-i", str(inv))
    assert code == 0 and out.startswith("single: Kubernetes")


def test_verbose_is_accepted_after_the_subcommand_and_shows_the_traceback(capsys, tmp_path):
    code, _, err = kf(capsys, "validate", "-i", str(tmp_path / "missing.yaml"), "-v")
    assert code == 3 and "Traceback" in err
    code, _, err = kf(capsys, "validate", "-i", str(tmp_path / "missing.yaml"))
    assert code == 3 and "Traceback" not in err


def test_render_takes_its_directory_from_out_dir_not_output(capsys, tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_bytes(INVENTORY.read_bytes())
    code, _, err = kf(capsys, "render", "-i", str(inv), "-o", str(tmp_path / "out"))
    assert code == 2 and "is not one of 'table', 'json', 'yaml'" in err
    code, _, _ = kf(capsys, "render", "-i", str(inv), "-d", str(tmp_path / "out"))
    assert code == 0 and (tmp_path / "out" / "node-1").is_dir()


def _help(*argv: str, **env: str) -> str:
    res = subprocess.run([sys.executable, "-m", "kubeforge", *argv, "--help"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_has_no_bool_metavars_or_rst_markup_and_wraps_to_the_terminal(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    code, narrow, _ = kf(capsys, *path.split(), "--help")
    assert code == 0 and "<bool>" not in narrow and "``" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 60
    monkeypatch.setenv("COLUMNS", "200")
    wide = kf(capsys, *path.split(), "--help")[1]
    assert len(wide.splitlines()) < len(narrow.splitlines())  # paragraphs reflow, not hard-wrapped


def test_no_color_is_honoured_on_a_terminal(capsys, tmp_path, monkeypatch):
    from kubeforge.ui.console import make_console

    monkeypatch.setenv("NO_COLOR", "1")
    console = make_console(force_terminal=True)
    with console.capture() as cap:
        console.print("[bold red]EXPIRED[/]")
    assert "\x1b[31" not in cap.get() and "EXPIRED" in cap.get()
    helped = _help("up", NO_COLOR="1", FORCE_COLOR="1", COLUMNS="100")
    assert "\x1b[3" not in helped


def test_shell_completion_is_offered():
    assert "--install-completion" in _help()


@pytest.mark.parametrize(("raised", "code", "said"), [
    (EOFError(), 1, "unexpected EOFError — this is a bug in kubeforge"),
    (KeyboardInterrupt(), 8, "interrupted"),
])
def test_an_eof_error_escaping_a_command_is_a_bug_and_only_ctrl_c_is_an_interruption(monkeypatch, capsys, raised, code, said):
    """click turns an EOFError and a Ctrl-C alike into Abort; only the Ctrl-C is the operator's. A
    connection paramiko finds dead while closing a channel once surfaced as "interrupted" (exit 8),
    and the operator was told to resume a run nobody had stopped."""
    import typer

    import kubeforge.cli.app as app_module

    probe = typer.Typer()

    @probe.command()
    def boom() -> None:
        raise raised

    @probe.command()
    def other() -> None:  # two commands, so "boom" is a subcommand as kubeforge's are
        pass

    monkeypatch.setattr(app_module, "build_command", lambda: typer.main.get_command(probe))
    assert run(["boom"]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
