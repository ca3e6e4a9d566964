"""Every local path the inventory holds is checked as text (NUL, length, ``~user``) before any rule
or the model looks at the file system with it."""

from __future__ import annotations

from typing import Any

from kubeforge.inventory.context import Context
from kubeforge.inventory.paths import HOST_PATHS, SPEC_PATHS, path_problem


def _at(data: Any, parts: tuple) -> Any:
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def check_paths(ctx: Context) -> None:
    spec = ctx.data.get("spec") if isinstance(ctx.data, dict) else None
    wanted: list[tuple[str | int, ...]] = [("spec", *p) for p in SPEC_PATHS]
    hosts = _at(spec, ("hosts",))
    if isinstance(hosts, list):
        wanted += [("spec", "hosts", i) + p for i in range(len(hosts)) for p in HOST_PATHS]
    for path in wanted:
        value = _at(ctx.data, path)
        if isinstance(value, str):
            problem = path_problem(value)
            if problem is not None:
                ctx.error(path, f"'{value}' {problem}")
