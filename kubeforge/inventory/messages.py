"""Turn pydantic's validation errors into Problems an operator can act on, at the right line:col.

Unknown and missing keys point at the key (or, for a missing key, at the mapping that lacks it);
bad values point at the value. Messages say what was expected and what was found.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from kubeforge.errors import Problem
from kubeforge.inventory.yamldoc import Positions

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def where(path: Iterable) -> str:
    """``("spec", "hosts", 2, "roles")`` -> ``hosts[2].roles`` (everything lives under spec)."""
    parts = list(path)
    if parts[:1] == ["spec"] and len(parts) > 1:
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _PLAIN_KEY.match(str(p)):
            out += ("." if out else "") + str(p)
        else:  # label keys hold dots and slashes; quote them so the path stays readable
            out += f'["{p}"]'
    return out


# a quoted value: the opening quote follows a space, '(' or ':' and is followed by a non-space (so the
# prose between one value's closing quote and the next value's opening quote never matches)
_QUOTED = re.compile(r"(?:^|(?<=[\s(:=]))'([^\s'][^'\n]{60,})'")
MAX_MESSAGE = 600
# control characters (NUL, escapes, newlines) shown escaped: a message is one printable line
_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}


def clip(message: str) -> str:
    """A message with every quoted value cut to 60 characters and the whole to MAX_MESSAGE: an
    inventory value of any length never floods the terminal."""
    message = _QUOTED.sub(lambda m: "'" + m.group(1)[:57] + "...'", message)
    message = message.translate(_CONTROL)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 20] + " ... (cut)"
    return message


def show(value: Any) -> str:
    """A short rendering of a YAML value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    return repr(value) if not isinstance(value, (int, float)) else str(value)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation allows (Optional/Union/list/dict peeled)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out = []
        for a in typing.get_args(annotation):
            out.extend(_unwrap(a))
        return out
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model whose keys are valid at ``loc`` (for 'did you mean')."""
    current: Any = root
    for part in loc:
        models = [t for t in _unwrap(current) if isinstance(t, type) and issubclass(t, BaseModel)]
        containers = [t for t in _unwrap(current) if typing.get_origin(t) in (list, dict)]
        if isinstance(part, int) and containers:
            current = typing.get_args(containers[0])[-1]
            continue
        if not models or not isinstance(part, str):
            return None
        by_alias = {(f.alias or n): f for n, f in models[0].model_fields.items()}
        if part not in by_alias:
            return None
        current = by_alias[part].annotation
    models = [t for t in _unwrap(current) if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if models else None


def allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    model = _model_at(root, loc)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _data_path(loc: tuple, data: Any, missing: bool) -> tuple:
    """pydantic locs may carry union member tags ('int', 'str'); keep only steps into the data."""
    out: list = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif missing and i == len(loc) - 1 and isinstance(node, dict):
            # a missing key: part of the path, but there is no node to descend into
            out.append(part)
            node = None
    return tuple(out)


def _message(err: Mapping[str, Any], key: Any, root: type[BaseModel], parent: tuple) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"'{key}' is required"
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, parent)
        msg = f"unknown key '{key}'"
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if not close:
            close = [a for a in allowed if a.lower() == str(key).lower()]
        if close:
            msg += f" (did you mean '{close[0]}'?)"
        elif allowed:
            msg += f" (expected one of: {', '.join(allowed)})"
        return msg
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        if isinstance(key, int) and parent and parent[-1] == "roles":
            return f"{show(value)} is not a role ({choices})"
        return f"{show(value)} is not a valid {key if isinstance(key, str) else 'value'} ({choices})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {show(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {show(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {show(value)}"
    if kind == "string_type":
        if isinstance(value, float):
            return f"expected a string, got the number {value} (write X.Y.Z or quote it)"
        return f"expected a string, got {show(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {show(value)}"
    if kind == "list_type":
        return f"expected a list, got {show(value)}"
    if kind == "too_short":
        return f"must not be empty (at least {ctx.get('min_length', 1)} item)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {op} {bound}, got {show(value)}"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return f"{msg[:1].lower()}{msg[1:]}, got {show(value)}"


def problems_from_pydantic(
    errors: Sequence[Mapping[str, Any]], data: Any, positions: Positions, file: str, root: type[BaseModel], prefix: tuple = ()
) -> list[Problem]:
    out: list[Problem] = []
    seen: set[tuple] = set()
    for err in errors:
        loc = prefix + tuple(err["loc"])
        path = _data_path(loc, data, err["type"] == "missing")
        if path in seen:  # one message per place (unions report once per member)
            continue
        seen.add(path)
        kind = err["type"]
        key = path[-1] if path else None
        parent = path[:-1]
        if kind == "missing":
            line, col = positions.value(parent)
            at = parent
        elif kind == "extra_forbidden":
            line, col = positions.key(path)
            at = path
        elif kind == "literal_error" and parent and parent[-1] == "roles":
            line, col = positions.value(path)
            at = parent
        else:
            line, col = positions.value(path)
            at = path
        out.append(Problem(file, line, col, clip(where(at)), clip(_message(err, key, root, parent))))
    return out
