"""The layering rule, checked over every module's imports (including ones inside functions):

cli > ui, workflows > execute > plan > facts, render, pki, inventory > transport > model > errors.
Only kubeforge/transport imports paramiko; only kubeforge/cli and kubeforge/ui import
typer/rich (and click, which typer is built on); only kubeforge/pki imports cryptography (the PKI,
certificate reading, backup encryption).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kubeforge"

LEVEL = {
    "errors": 0,
    "model": 1,
    "logs": 1,  # logging and redaction: used from the transport up, needs only the model
    "transport": 2,
    "facts": 3,
    "render": 3,
    "pki": 3,
    "backups": 3,  # etcd backups on the operator's machine: snapshot files, manifests, the stored file
    "inventory": 3,
    "plan": 4,
    "execute": 5,
    "ui": 6,
    "workflows": 6,
    "cli": 7,
    "__main__": 7,
}
# Same level, still not allowed to see each other: workflows never print, the UI never decides.
FORBIDDEN_PAIRS = {("ui", "workflows"), ("workflows", "ui")}
THIRD_PARTY_OWNERS = {
    "paramiko": {"transport"},
    "invoke": {"transport"},
    "typer": {"cli", "ui"},
    "click": {"cli", "ui"},
    "rich": {"cli", "ui"},
    "cryptography": {"pki"},
}


def layer_of(module_parts: tuple[str, ...]) -> str:
    return module_parts[0] if module_parts else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # for a package's __init__ too: its own package
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def module_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def violations() -> list[str]:
    out = []
    for path in module_files():
        rel = path.relative_to(PACKAGE)
        here = layer_of(rel.with_suffix("").parts) if len(rel.parts) > 1 else rel.stem
        if here == "__init__":
            continue  # kubeforge/__init__.py: the version string only
        for line, name in imports(path):
            top = name.split(".")[0]
            where = f"kubeforge/{rel}:{line}"
            if top in THIRD_PARTY_OWNERS and here not in THIRD_PARTY_OWNERS[top]:
                out.append(f"{where}: {here} imports {top} (only {', '.join(sorted(THIRD_PARTY_OWNERS[top]))} may)")
            if top != "kubeforge" or name == "kubeforge":
                continue
            target = name.split(".")[1]
            if target == "__version__" or target not in LEVEL:
                continue
            if here not in LEVEL:
                out.append(f"{where}: kubeforge/{here} has no place in the layering; add it to LEVEL")
                continue
            if LEVEL[target] > LEVEL[here] or (here, target) in FORBIDDEN_PAIRS:
                out.append(f"{where}: {here} imports {name} ({target} is above or beside {here})")
    return out


def test_no_module_imports_a_layer_above_its_own():
    problems = violations()
    assert problems == [], "layering violations:\n" + "\n".join(problems)


def test_every_top_level_package_has_a_layer():
    tops = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tops |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert tops - set(LEVEL) == set()


@pytest.mark.parametrize(
    "source, layer, expected",
    [
        ("from kubeforge.execute import Executor\n", "plan", "plan imports kubeforge.execute"),
        ("import rich.console\n", "execute", "execute imports rich"),
        ("from cryptography import x509\n", "workflows", "workflows imports cryptography"),
        ("def f():\n    import paramiko\n", "facts", "facts imports paramiko"),
        ("from kubeforge.ui import confirm\n", "workflows", "workflows imports kubeforge.ui"),
        ("from ..cli import app\n", "ui", "ui imports kubeforge.cli"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(tmp_path, monkeypatch, source, layer, expected):
    fake = tmp_path / "kubeforge"
    (fake / layer).mkdir(parents=True)
    (fake / layer / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert any(expected in v for v in violations())
