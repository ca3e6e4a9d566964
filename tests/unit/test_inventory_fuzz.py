"""A broken inventory never produces a traceback: only InventoryError (or success) leaves load()."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeforge.errors import InventoryError, Problem
from kubeforge.inventory import loads
from kubeforge.inventory.yamldoc import parse

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [p.read_text() for p in sorted((REPO / "inventories").glob("*.yaml"))]
SOURCE = Path("/nonexistent/fuzz/inv.yaml")
FUZZ = settings(max_examples=int(os.environ.get("KUBEFORGE_FUZZ_EXAMPLES", "80")), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(text: str) -> str:
    """'ok' or 'invalid'; any other exception fails the test."""
    try:
        result = loads(text, file="fuzz.yaml", source=SOURCE)
    except InventoryError as exc:
        assert exc.problems or exc.warnings or str(exc)
        for p in exc.problems:
            assert isinstance(p, Problem) and p.file == "fuzz.yaml" and p.line >= 0 and p.col >= 0
            assert "\n" not in str(p)
        return "invalid"
    assert result.cluster.hosts
    return "ok"


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["control-plane", "etcd", "worker", "load-balancer", "1.34.2", "10.0.0.1", "10.0.0.0/8", "25%", "~"]),
)
keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["apiVersion", "kind", "metadata", "spec", "name", "hosts", "roles", "address", "etcd",
                     "network", "podCIDR", "controlPlaneEndpoint", "mode", "ssh", "port", "labels", "taints"]),
)
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


@FUZZ
@given(documents)
def test_random_documents_give_only_clean_errors(doc):
    import json

    # JSON is YAML: this feeds arbitrary shapes and types through the whole pipeline
    assert _outcome(json.dumps(doc)) in ("ok", "invalid")


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_example_inventories_give_only_clean_errors(text, data):
    lines = text.splitlines(keepends=True)
    op = data.draw(st.sampled_from(["delete", "duplicate", "retype", "truncate", "indent", "splice"]))
    i = data.draw(st.integers(0, len(lines) - 1))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "retype":
        head, sep, _ = lines[i].partition(":")
        value = data.draw(st.sampled_from(["[]", "{}", "~", "-1", "0", "99999", "true", "'x'", "[a, b]", "1.5", "&a x",
                                           "*a", "!!binary aGk=", "0x1F", "{a: [1, {b: 2}]}", "|\n  text"]))
        lines[i] = f"{head}{sep or ':'} {value}\n"
    elif op == "truncate":
        cut = data.draw(st.integers(0, len(text)))
        assert _outcome(text[:cut]) in ("ok", "invalid")
        return
    elif op == "indent":
        lines[i] = data.draw(st.sampled_from(["", " ", "   ", "\t"])) + lines[i]
    else:
        junk = data.draw(st.text(alphabet=":-[]{}#&*!|>'\"%@` \n\tabc019", max_size=10))
        lines.insert(i, junk + "\n")
    assert _outcome("".join(lines)) in ("ok", "invalid")


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_gives_only_clean_errors(text):
    assert _outcome(text) in ("ok", "invalid")


def test_an_alias_bomb_is_refused_cleanly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for n in "bcdefgh":
        bomb += f"{n}: &{n} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
        prev = n
    try:
        loads(bomb, file="bomb.yaml", source=SOURCE)
    except InventoryError as exc:
        assert "aliases expand beyond" in str(exc)
    else:
        raise AssertionError("an alias bomb loaded")


def test_every_example_parses_with_positions_for_every_key():
    for text in EXAMPLES:
        doc = parse(text)
        assert doc.problems == []
        assert ("spec", "hosts", 0, "name") in doc.positions.keys


def test_pathological_nesting_is_refused_before_it_can_crash_the_parser():
    # 50,000 levels crash ruamel's C parser outright; 300 levels exceed Python's recursion limit
    for text in ("a: " + "[" * 50_000 + "]" * 50_000, "- " * 50_000 + "x",
                 "".join("  " * i + f"k{i}:\n" for i in range(300))):
        try:
            loads(text, file="deep.yaml", source=SOURCE)
        except InventoryError as exc:
            assert "nested deeper than 100 levels" in str(exc)
        else:
            raise AssertionError("a deeply nested document loaded")


def test_a_directory_is_not_an_inventory(tmp_path):
    from kubeforge.inventory import load

    try:
        load(tmp_path)
    except InventoryError as exc:
        assert str(exc) == f"{tmp_path}: is a directory, not an inventory file"
    else:
        raise AssertionError("a directory loaded")
