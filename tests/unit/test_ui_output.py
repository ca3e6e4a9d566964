"""ui.output: one document per invocation in json or yaml, the same data in both, an error object
beside the result on failure; the confirmation prompt never writes to stdout."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ruamel.yaml import YAML

from kubeforge.model.secret import Secret
from kubeforge.ui import output


def test_json_and_yaml_hold_the_same_plain_data_in_the_document_order():
    data = {"z": 1, "path": Path("/x"), "items": [{"b": None}], "a": "1.30"}
    as_json = json.loads(output.to_json(data))
    as_yaml = YAML(typ="safe", pure=True).load(output.to_yaml(data))
    assert as_json == as_yaml == {"z": 1, "path": "/x", "items": [{"b": None}], "a": "1.30"}
    assert output.to_yaml(data).splitlines()[0] == "z: 1"


def test_a_secret_never_reaches_the_document_in_either_format():
    s = Secret("hunter2-token-value")
    for fmt in ("json", "yaml"):
        assert "hunter2-token-value" not in output.render({"leaked": s.reveal()}, fmt)


def test_show_prints_the_table_now_or_keeps_the_document_for_the_end():
    printed: list[str] = []
    output.reset("table")
    output.show({"a": 1}, lambda: printed.append("table"))
    assert printed == ["table"] and output.STATE.document is None
    output.reset("json")
    output.show(lambda: {"a": 1}, lambda: printed.append("again"))
    assert printed == ["table"] and output.STATE.document == {"a": 1}
    out = io.StringIO()
    output.finish(output.error_object(exit_code=4, category="check", message="m", hint=None, log="/l"), file=out)
    assert json.loads(out.getvalue()) == {"a": 1, "error": {"exit_code": 4, "category": "check", "message": "m",
                                                            "hint": None, "log": "/l"}}
    output.reset()


def test_an_error_with_no_result_is_the_error_object_alone_and_table_prints_no_document():
    output.reset("yaml")
    out = io.StringIO()
    output.finish(output.error_object(exit_code=3, category="inventory", message="m", hint="h", log=None), file=out)
    assert YAML(typ="safe").load(out.getvalue()) == {"error": {"exit_code": 3, "category": "inventory", "message": "m",
                                                               "hint": "h", "log": None}}
    output.reset("table")
    out = io.StringIO()
    output.finish(output.error_object(exit_code=3, category="inventory", message="m", hint="h", log=None), file=out)
    assert out.getvalue() == ""


def test_the_confirmation_question_goes_to_the_console_not_stdout(capsys, monkeypatch):
    from rich.console import Console

    from kubeforge.plan.phase import HostLane, PhasePlan, Plan
    from kubeforge.plan.steps import RunStep
    from kubeforge.plan.strategy import serial
    from kubeforge.transport.base import Command
    from kubeforge.ui.confirm import Confirmer

    err = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    step = RunStep("h-1", Command(argv=["true"]), "Do nothing much")
    plan = Plan("demo", (PhasePlan("Demo", "Demo", serial(), (HostLane("h-1", (step,)),)),))
    assert Confirmer(Console(file=err, width=100), interactive=True)(plan) is True
    assert capsys.readouterr().out == "" and "Run these 1 steps? [y/N]" in err.getvalue()
