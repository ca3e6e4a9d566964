"""Every probe of a host lives in the facts layer (issue 14): nothing outside kubeforge/facts sends a
host a command to read it.

What counts, checked over the AST of every module outside kubeforge/facts, kubeforge/transport (the
SSH and local primitives) and kubeforge/execute (the executor, which runs the plan's steps with their
guards and gates: plan data, shown by `plan`, never a probe):

1. a send: any reference to a transport's ``.run`` or ``.stream`` (a call, or the bound method handed
   to a thread pool); ``subprocess.run`` is this machine, not a host;
2. a command built where nothing should build one: ``Command(...)`` in workflows/, cli/ or ui/
   (orchestration gathers facts and hands plans to the engine);
3. a command labelled as a read: ``Command(..., description="read ...")`` (or "probe", "facts",
   "read-only", "status") anywhere outside the facts layer.

The only exceptions are named below with the function they sit in, and each must still be there (a
stale entry fails): runs that change a host outside the executor. There is no exception for a read.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kubeforge"
OUTSIDE = {"facts", "transport", "execute"}
ORCHESTRATION = {"workflows", "cli", "ui"}
READ_LABEL = re.compile(r"\bread\b|read-only|\bprobe\b|\bfacts\b|\bstatus\b", re.IGNORECASE)

# (module, top-level function) -> why it may send or build a command outside the facts layer
CHANGES_A_HOST = {
    ("workflows/etcd/backup.py", "take_backup"):
        "the backup procedure: `snapshot save` writes a file on the member, `snapshot status` checks that "
        "file while it streams home, `rm` removes it (issue 14 item 2: to become steps of a plan)",
    ("workflows/etcd/backup.py", "download"): "streams the snapshot file the backup wrote (its payload, not a fact)",
    ("workflows/etcd/members.py", "_retire"): "stops and moves aside the etcd of a member that left the cluster",
}
ALLOWED = dict(CHANGES_A_HOST)


def _top_level_functions(tree: ast.Module) -> dict[int, str]:
    """Line -> name of the top-level function (or class) that holds it."""
    where: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                where[line] = node.name
    return where


def _is_command_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "Command") or (isinstance(f, ast.Attribute) and f.attr == "Command")


def _description(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "description":
            v = kw.value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                return v.value
            if isinstance(v, ast.JoinedStr):
                return "".join(p.value for p in v.values if isinstance(p, ast.Constant) and isinstance(p.value, str))
    return None


def findings(source: str, module: str) -> list[tuple[str, int, str, str]]:
    """(module, line, enclosing top-level function, what) for every send or read command in ``source``."""
    tree = ast.parse(source)
    owner = _top_level_functions(tree)
    layer = module.split("/")[0]
    out = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr in ("run", "stream"):
            if not (isinstance(node.value, ast.Name) and node.value.id == "subprocess"):
                what = f"sends a command to a host (.{node.attr})"
        elif _is_command_call(node):
            assert isinstance(node, ast.Call)
            label = _description(node)
            if layer in ORCHESTRATION:
                what = "builds a host command in the orchestration layer"
            elif label is not None and READ_LABEL.search(label):
                what = f"builds a command labelled as a read ({label!r})"
        if what:
            out.append((module, node.lineno, owner.get(node.lineno, "<module>"), what))
    return out


def scan() -> list[tuple[str, int, str, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if "__pycache__" in module or module.split("/")[0] in OUTSIDE:
            continue
        out += findings(path.read_text(), module)
    return out


def test_no_host_is_read_outside_the_facts_layer():
    bad = [f"kubeforge/{m}:{line} ({fn}): {what}" for m, line, fn, what in scan() if (m, fn) not in ALLOWED]
    assert bad == [], ("reads of hosts outside kubeforge/facts (move the probe, its parser and its runner "
                       "there):\n" + "\n".join(bad))


def test_every_exception_is_still_needed():
    found = {(m, fn) for m, _, fn, _ in scan()}
    stale = sorted(k for k in ALLOWED if k not in found)
    assert stale == [], f"exceptions that no longer send or build anything; remove them: {stale}"


def test_the_scan_catches_each_kind_of_read():
    source = '''
import subprocess
from kubeforge.transport.base import Command

def probe(pool, host):
    return pool.get(host).run(Command(argv=["cat", "/etc/os-release"]))

def threaded(ex, transport, cmd):
    return ex.submit(transport.stream, "/var/lib/x", print)

def labelled():
    return Command(script="kubectl get nodes -o json", description="read the nodes (read-only)")

def local():
    return subprocess.run(["true"])
'''
    plan_hits = {(fn, what.split(" (")[0]) for _, _, fn, what in findings(source, "plan/x.py")}
    assert plan_hits == {("probe", "sends a command to a host"), ("threaded", "sends a command to a host"),
                         ("labelled", "builds a command labelled as a read")}
    workflow_hits = {fn for _, _, fn, what in findings(source, "workflows/x.py") if what.startswith("builds a host command")}
    assert workflow_hits == {"probe", "labelled"}
