"""``--output json``: one JSON document on stdout, nothing else there (progress goes to stderr)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from kubeforge.model.secret import redact


def to_json(data: Any) -> str:
    # redact() again: a Secret's value must not reach stdout even if a dict carried it by mistake.
    return redact(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit_json(data: Any, file: TextIO | None = None) -> None:
    out = file or sys.stdout
    out.write(to_json(data) + "\n")
    out.flush()


def emit(obj: Any, file: TextIO | None = None) -> None:
    """Anything with ``to_dict()`` (Plan, Report, facts) as JSON."""
    emit_json(obj.to_dict() if hasattr(obj, "to_dict") else obj, file)
