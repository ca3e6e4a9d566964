"""Every workflow writes its phases one way (kubeforge/plan/phase.py, docs/architecture.md "Phases"):
a class with ``name``, ``title`` and ``strategy`` as class attributes and ``plan(ctx)`` returning
``PhasePlan.of(self, ...)``; a title that names something of the run comes from the phase's one
``title_for``; a planner lists its phases in order (``PHASES``), names and titles unique in it.

The checks read the source (AST), so a branch that is never planned in a test is held too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "kubeforge"
PHASE_MODULE = ROOT / "plan" / "phase.py"


# Every planner, by the module that lists its phases in order.
PLANNERS = {
    "up": "kubeforge.plan.up",
    "upgrade": "kubeforge.plan.upgrade.planner",
    "reset": "kubeforge.plan.reset",
    "kubeconfig": "kubeforge.plan.kubeconfig",
    "os upgrade": "kubeforge.plan.os_upgrade",
    "node remove": "kubeforge.plan.node.remove",
    "node replace": "kubeforge.plan.node.replace",
    "etcd install": "kubeforge.plan.etcd.install",
    "etcd restore": "kubeforge.plan.etcd.restore",
    "etcd upgrade": "kubeforge.plan.etcd.upgrade",
    "etcd members": "kubeforge.plan.etcd.membership",
    "certs renew": "kubeforge.plan.certs.renew",
    "certs rotate-ca": "kubeforge.plan.certs.rotate",
    "certs rotate-ca --ca front-proxy": "kubeforge.plan.certs.rotate_front_proxy",
    "certs rotate-ca --ca kubernetes": "kubeforge.plan.certs.rotate_kubernetes",
}

# Bases, not phases of a planner of their own: their subclasses are listed.
BASES = {"kubeforge.plan.warning.WarnOperator", *(f"kubeforge.plan.certs.rotate.Stage{kind}"
                                                  for kind in ("Done", "OnMembers", "OnApiServers", "Record")),
         "kubeforge.plan.certs.rotate_front_proxy.FrontProxyStageOnApiServers",
         *(f"kubeforge.plan.certs.rotate_kubernetes.ClusterCA{kind}" for kind in ("OnControlPlanes", "OnWorkers", "Copies"))}


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path == PHASE_MODULE:
            continue
        out.append((rel, ast.parse(path.read_text(), filename=str(path))))
    return out


def _is_phaseplan(node: ast.AST, attr: str | None = None) -> bool:
    """``PhasePlan(...)`` (attr None) or ``PhasePlan.<attr>(...)``."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    if attr is None:
        return isinstance(f, ast.Name) and f.id == "PhasePlan"
    return isinstance(f, ast.Attribute) and f.attr == attr and isinstance(f.value, ast.Name) and f.value.id == "PhasePlan"


def _is_title_for(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "title_for"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self")


def _phase_plan_calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if _is_phaseplan(n, "of") or _is_phaseplan(n, "noop")]


def test_no_phase_plan_is_built_field_by_field_outside_the_phase_module():
    found = [f"{rel}:{n.lineno}" for rel, tree in _modules() for n in ast.walk(tree) if _is_phaseplan(n)]
    assert not found, "PhasePlan(name=..., title=...) built inline; write the phase as a class: " + ", ".join(found)


def test_every_phase_plan_is_made_by_its_phase_with_the_title_from_one_place():
    problems = []
    for rel, tree in _modules():
        for call in _phase_plan_calls(tree):
            where = f"{rel}:{call.lineno}"
            if not call.args or not (isinstance(call.args[0], ast.Name) and call.args[0].id == "self"):
                problems.append(f"{where}: PhasePlan.{call.func.attr} outside its phase's method (first argument not self)")  # type: ignore[attr-defined]
            for kw in call.keywords:
                if kw.arg == "name":
                    problems.append(f"{where}: name= given; the phase's class attribute (and instance) name it")
                if kw.arg == "title" and not _is_title_for(kw.value):
                    problems.append(f"{where}: title= is not self.title_for(...)")
    assert not problems, "\n".join(problems)


def _phase_classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [n for n in tree.body if isinstance(n, ast.ClassDef)
            and any(isinstance(b, ast.FunctionDef) and b.name == "plan" for b in n.body)
            and _phase_plan_calls(n)]


def _class_attrs(cls: ast.ClassDef) -> dict[str, ast.expr]:
    return {t.id: n.value for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def test_every_phase_class_names_and_titles_itself_once():
    problems = []
    for rel, tree in _modules():
        for cls in _phase_classes(tree):
            attrs = _class_attrs(cls)
            where = f"{rel}:{cls.lineno} {cls.name}"
            for attr in ("name", "title"):
                if not (isinstance(attrs.get(attr), ast.Constant) and isinstance(attrs[attr].value, str)):  # type: ignore[union-attr]
                    problems.append(f"{where}: {attr} is not a string class attribute")
            if "strategy" not in attrs:
                problems.append(f"{where}: no strategy class attribute")
            if isinstance(attrs.get("name"), ast.Constant) and attrs["name"].value != cls.name:  # type: ignore[union-attr]
                problems.append(f"{where}: name {attrs['name'].value!r} is not the class's name")  # type: ignore[union-attr]
            # a class with a title_for uses it on every plan it returns: one title, not one per branch
            if any(isinstance(b, ast.FunctionDef) and b.name == "title_for" for b in cls.body):
                for call in _phase_plan_calls(cls):
                    if _is_phaseplan(call, "noop") or not any(kw.arg == "title" for kw in call.keywords):
                        problems.append(f"{where}:{call.lineno}: has title_for but this plan keeps the fixed title")
    assert not problems, "\n".join(problems)


def _listed(module: str) -> tuple:
    """A planner's phases in order; upgrade's warnings (shown only when they warn) come first, and
    up's INSERTED (placed by the workflow where they apply) last."""
    m = importlib.import_module(module)
    return (*getattr(m, "WARNINGS", ()), *m.PHASES, *getattr(m, "INSERTED", ()))


@pytest.mark.parametrize("workflow", sorted(PLANNERS))
def test_every_planner_lists_its_phases_in_order_each_named_and_titled_once(workflow):
    phases = _listed(PLANNERS[workflow])
    assert phases, f"{workflow}: no phases listed"
    names = [p.name for p in phases]
    titles = [p.title for p in phases]
    assert len(set(names)) == len(names), f"{workflow}: a phase name twice: {names}"
    assert len(set(titles)) == len(titles), f"{workflow}: a title twice: {titles}"
    for p in phases:
        assert p.name == (p.__name__ if isinstance(p, type) else type(p).__name__)


def test_every_phase_class_is_listed_by_a_planner():
    listed = set()
    for module in PLANNERS.values():
        for p in _listed(module):
            cls = p if isinstance(p, type) else type(p)
            listed.add(f"{cls.__module__}.{cls.__name__}")
    unlisted = []
    for rel, tree in _modules():
        if not rel.startswith("plan/"):
            continue
        mod = "kubeforge." + rel[:-3].replace("/", ".").removesuffix(".__init__")
        unlisted += [f"{mod}.{c.name}" for c in _phase_classes(tree) if f"{mod}.{c.name}" not in listed | BASES]
    assert not unlisted, "phases no planner lists: " + ", ".join(unlisted)


def test_a_phase_planned_per_member_is_named_by_its_instance_and_titled_the_same_in_every_branch(tmp_path):
    from kubeforge.plan.etcd.membership import ListedMember, RemoveEtcdMember
    from tests.factories import make_cluster

    cluster = make_cluster(tmp_path, n_etcd=3)
    e1, e2, _ = cluster.etcd_members
    listed = ListedMember(id="8e9e05c52164694d", name="etcd-3", peer_urls=("https://10.0.0.3:2380",),
                          client_urls=("https://10.0.0.3:2379",), healthy=True)
    planned = RemoveEtcdMember(listed, e1, (e1, e2), None).plan(cluster)
    gone = RemoveEtcdMember.gone("etcd-3").plan(cluster)  # node replace: etcd no longer lists it
    assert (planned.name, planned.title) == (gone.name, gone.title) == ("RemoveEtcdMember-etcd-3", "Remove etcd member etcd-3")
    assert not planned.is_noop and gone.reason == "etcd no longer lists etcd-3"
