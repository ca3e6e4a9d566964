"""The one jinja2 Environment over ``templates/``, and the filters templates use.

Templates are read through importlib.resources: an installed wheel carries them as
``kubeforge/templates``; a source checkout (or editable install) falls back to ``<repo>/templates``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import jinja2

# A YAML scalar that every YAML 1.1/1.2 parser reads back as the same string without quotes.
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./:@+\-]*$")
_YAML_AMBIGUOUS = re.compile(
    r"(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|null|Null|NULL|~"
    r"|[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)"  # ints (YAML 1.1 and 1.2)
    r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"  # floats
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"  # YAML 1.1 base-60 numbers
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*"  # timestamps
    r"|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN))"
)

_NEEDS_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def template_root() -> Traversable:
    """Where the templates live: inside the package when installed, else the repository's top level."""
    packaged = resources.files("kubeforge") / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


class _TraversableLoader(jinja2.BaseLoader):
    """Loads from an importlib.resources Traversable, so zipped installs work too."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = self.root
        for part in template.split("/"):
            node = node / part
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        # Templates never change while a process runs, so the compiled copy is always fresh.
        return node.read_text(encoding="utf-8"), None, lambda: True

    def list_templates(self) -> list[str]:
        found: list[str] = []

        def walk(node: Traversable, prefix: str) -> None:
            for child in node.iterdir():
                if child.is_dir():
                    walk(child, f"{prefix}{child.name}/")
                elif child.name.endswith(".j2"):
                    found.append(prefix + child.name)

        walk(self.root, "")
        return sorted(found)


def yaml_scalar(value: object) -> str:
    """Render a scalar for YAML: plain when unambiguous, otherwise a double-quoted (JSON) string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN_SAFE.fullmatch(text) and not _YAML_AMBIGUOUS.fullmatch(text) and not text.endswith(":"):
        return text
    return _double_quoted(text)


def _yaml_escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _double_quoted(text: str) -> str:
    # JSON escaping (valid YAML) for quotes, backslashes and C0 controls; characters YAML treats as
    # line breaks or refuses raw (C1 controls, U+2028/9, BOM, non-characters) get YAML escapes.
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _yaml_escape(m.group()), body) + '"'


def shell_quote_double(value: object) -> str:
    """A value for a systemd EnvironmentFile line (double-quoted, backslash-escaped)."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def duration(seconds: int) -> str:
    """Seconds as a Go duration string kubeadm accepts (``24h0m0s``)."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s"


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_TraversableLoader(template_root()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters["y"] = yaml_scalar
    env.filters["envq"] = shell_quote_double
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render_template(name: str, **context: object) -> bytes:
    return environment().get_template(name).render(**context).encode("utf-8")
