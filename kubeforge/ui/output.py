"""``--output table|json|yaml``: the one output switch every command shares.

With ``table`` a command prints for people as it goes. With ``json`` or ``yaml`` stdout holds exactly
one document, printed once when the command ends: the command's result, and on failure the same
document with an ``error`` object added (exit code, category, message, hint, log path). A failure
before any result still prints ``{"error": {...}}``. Human messages always go to stderr.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from kubeforge.model.secret import redact

FORMATS = ("table", "json", "yaml")
STRUCTURED = ("json", "yaml")


def to_json(data: Any) -> str:
    # redact() again: a Secret's value must not reach stdout even if a dict carried it by mistake.
    return redact(json.dumps(data, indent=2, sort_keys=False, default=str))


def to_yaml(data: Any) -> str:
    """YAML of the same document ``to_json`` prints: through JSON first, so both formats hold the
    same plain types (paths, versions and datetimes as strings)."""
    from ruamel.yaml import YAML

    plain = json.loads(json.dumps(data, default=str))
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    # keep the document's own key order (ruamel's annotations declare this bool switch as None)
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buf = io.StringIO()
    yaml.dump(plain, buf)
    return redact(buf.getvalue())


def render(data: Any, fmt: str) -> str:
    return to_yaml(data) if fmt == "yaml" else to_json(data) + "\n"


def emit_json(data: Any, file: TextIO | None = None) -> None:
    out = file or sys.stdout
    out.write(to_json(data) + "\n")
    out.flush()


def emit(obj: Any, file: TextIO | None = None) -> None:
    """Anything with ``to_dict()`` (Plan, Report, facts) as JSON."""
    emit_json(obj.to_dict() if hasattr(obj, "to_dict") else obj, file)


def document_of(obj: Any) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


@dataclass
class OutputState:
    """The format of this invocation and the document it has produced so far."""

    format: str = "table"
    document: Any = None


STATE = OutputState()


def reset(fmt: str = "table") -> None:
    STATE.format = fmt
    STATE.document = None


def set_format(fmt: str) -> None:
    STATE.format = fmt


def current_format() -> str:
    return STATE.format


def structured() -> bool:
    return STATE.format in STRUCTURED


def show(document: Any | Callable[[], Any], table: Callable[[], None]) -> None:
    """The one way a command hands over its result: ``table()`` prints it now for people; in json
    or yaml the document is kept and printed once at the end (with an error beside it on failure)."""
    if structured():
        STATE.document = document() if callable(document) else document
    else:
        table()


def error_object(*, exit_code: int, category: str, message: str, hint: str | None, log: str | None,
                 problems: list[str] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"exit_code": exit_code, "category": category, "message": message,
                             "hint": hint, "log": log}
    if problems:
        error["problems"] = problems
    return {"error": error}


def finish(error: dict[str, Any] | None = None, file: TextIO | None = None) -> None:
    """Print this invocation's document (json/yaml only). On failure the error goes beside the
    result the command had already produced, or beside a report the error carries."""
    if not structured():
        return
    doc = STATE.document
    if error is not None:
        if doc is None:
            doc = {}
        elif not isinstance(doc, dict):
            doc = {"result": doc}
        doc = {**doc, **error}
    if doc is None:
        return
    out = file or sys.stdout
    out.write(render(doc, STATE.format))
    out.flush()
