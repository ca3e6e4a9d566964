"""A broken inventory never produces a traceback: only InventoryError (or success) leaves load()."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from kubeforge.errors import InventoryError, Problem
from kubeforge.inventory import loads
from kubeforge.inventory.yamldoc import parse

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [p.read_text() for p in sorted((REPO / "inventories").glob("*.yaml"))]
SOURCE = Path("/nonexistent/fuzz/inv.yaml")
# derandomize: the same examples on every run and in CI (a fixed seed); the budget keeps the whole
# module well under a minute on a loaded CI runner.
FUZZ = settings(max_examples=int(os.environ.get("KUBEFORGE_FUZZ_EXAMPLES", "80")), deadline=None, database=None,
                derandomize=True, suppress_health_check=[HealthCheck.too_slow])


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



# --- the classes of input that crashed once; each must end in exit 3 with file:line:col -----------
SINGLE = (REPO / "inventories" / "single-node.yaml").read_text()
HOSTILE_VALUES = [
    "a" * 5000,  # longer than PATH_MAX
    "dir/" + "n" * 300,  # a name longer than NAME_MAX
    '"a\\0b"',  # NUL
    "~nosuchuser-kf/key",  # expanduser raises RuntimeError
    "x" * 100_000,  # a value of any length, echoed in messages
    "'has space'", "https://x.example/", "''", "'\\x1b[31mred'",
    "*.wild.example", "fd00::1", "'1.34'", "1.34", "'v1.34.2'",
]


def _with(text: str, key: str, value: str) -> str:
    """``text`` with the line setting ``key`` (anywhere) replaced by ``key: value``."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        head, sep, _ = line.partition(":")
        if sep and head.strip().lstrip("- ") == key:
            indent = head[: len(head) - len(head.lstrip())]
            lines[i] = f"{indent}{head.strip()}: {value}\n"
    return "".join(lines)


def _invalid_at(text: str, needle: str) -> str:
    try:
        loads(text, file="case.yaml", source=SOURCE)
    except InventoryError as exc:
        shown = str(exc)
        assert needle in shown, shown
        assert all(p.line >= 1 and p.col >= 1 for p in exc.problems if needle in p.message), shown
        assert max(len(str(p)) for p in exc.problems) < 800
        return shown
    raise AssertionError(f"accepted: {text[:200]!r}")


def test_a_mapping_that_merges_itself_is_refused_at_its_merge_key():
    text = SINGLE.replace("  ssh:\n", "  ssh: &s\n    <<: *s\n")
    _invalid_at(text, "merges a mapping into itself")
    _invalid_at("a: &a\n  b: &b\n    <<: *a\n  <<: *b\n", "merges a mapping into itself")


def test_deeply_nested_explicit_keys_are_refused_before_the_c_parser_sees_them():
    for text in ("? " * 50_000 + "x\n", "- ? " * 30_000 + "x\n", "a: " + "{" * 50_000):
        _invalid_at(text, "nested deeper than 100 levels")


@pytest.mark.parametrize("value, needle", [
    ("a" * 5000, "a path has at most 4096"),
    ("dir/" + "n" * 300, "a file name has at most 255 bytes"),
    ('"a\\0b"', "contains a NUL character"),
    ("~nosuchuser-kf/key", "no such user on this machine"),
], ids=["too-long", "long-name", "nul", "unknown-user"])
@pytest.mark.parametrize("key", ["identityFile", "knownHosts", "bundleDir", "keyFile", "directory", "manifest"])
def test_path_values_the_os_cannot_take_are_refused_without_touching_it(key, value, needle):
    text = SINGLE.replace("    user: root\n", "    user: root\n    identityFile: x\n    knownHosts: y\n")
    text = text.replace("      keep: 7\n", "      keep: 7\n      directory: b\n      keyFile: k\n      encryption: keyfile\n")
    text = text.replace("  ssh:\n", "  packages:\n    source: offline\n    bundleDir: d\n  ssh:\n")
    _invalid_at(_with(text, key, value), needle)


def test_a_file_with_no_end_is_read_only_up_to_the_limit():
    from kubeforge.inventory import load

    try:
        load("/dev/zero")
    except InventoryError as exc:
        assert "larger than 16 MiB" in str(exc)
    else:
        raise AssertionError("/dev/zero loaded")


@pytest.mark.parametrize("san", ["has space", "https://x.example/", "", "x" * 80_000, "a_b.example", "10.0.0.1/24"],
                         ids=["space", "url", "empty", "80k", "underscore", "cidr"])
def test_extra_sans_that_are_neither_dns_names_nor_ips_are_refused(san):
    text = SINGLE.replace("    mode: none\n", f"    mode: none\n    extraSANs: ['{san}', api.example, '*.api.example', 10.1.2.3, 'fd00::1']\n")
    shown = _invalid_at(text, "is neither an IP address nor a DNS name")
    assert shown.count("is neither an IP address nor a DNS name") == 1


def test_an_ipv6_host_with_ipv4_ranges_is_refused():
    _invalid_at(SINGLE.replace("192.168.50.10", "fd00::10"), "is IPv6 but podCIDR 10.244.0.0/16 is IPv4")


def _with_version(version: str) -> str:
    """The single-node example with its kubernetesVersion line set to ``version`` (whatever it was)."""
    out, n = re.subn(r"(?m)^(\s*kubernetesVersion:).*$", lambda m: f"{m.group(1)} {version}", SINGLE)
    assert n == 1
    return out


@pytest.mark.parametrize("version", ['"1.34"', "'1.34'", '"1"', "'v1.34'"])
def test_a_kubernetes_version_without_its_patch_is_refused_even_quoted(version):
    _invalid_at(_with_version(version), "write X.Y.Z")


def test_values_of_any_length_are_cut_in_messages():
    shown = _invalid_at(SINGLE.replace("name: single", "name: " + "X" * 100_000), "is not a valid cluster name")
    assert len(shown) < 1000 and "XXX..." in shown


def test_control_characters_in_values_are_shown_escaped():
    shown = _invalid_at(SINGLE.replace("name: single", 'name: "a\\x1b[2Jb"'), "is not a valid cluster name")
    assert "\x1b" not in shown and "\\x1b" in shown


@seed(20261206)
@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_example_inventories_with_hostile_values_anywhere_give_only_clean_errors(text, data):
    lines = text.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.sampled_from(candidates))
        head, _, _ = lines[i].partition(":")
        value = data.draw(st.one_of(st.sampled_from(HOSTILE_VALUES), st.sampled_from(["&x {<<: *x}", "[" * 200, "? " * 200])))
        lines[i] = f"{head}: {value}\n"
    assert _outcome("".join(lines)) in ("ok", "invalid")


CLI_CASES = {
    "self-merge": SINGLE.replace("  ssh:\n", "  ssh: &s\n    <<: *s\n"),
    "deep-keys": "? " * 50_000 + "x\n",
    "long-path": SINGLE.replace("    user: root\n", "    user: root\n    identityFile: " + "a" * 5000 + "\n"),
    "nul-path": SINGLE.replace("    user: root\n", '    user: root\n    identityFile: "a\\0b"\n'),
    "unknown-user": SINGLE.replace("    user: root\n", "    user: root\n    identityFile: ~nosuchuser-kf/k\n"),
    "bad-san": SINGLE.replace("    mode: none\n", "    mode: none\n    extraSANs: ['a b']\n"),
    "ipv6-host": SINGLE.replace("192.168.50.10", "fd00::10"),
    "short-version": _with_version('"1.34"'),
}


def test_each_class_exits_3_with_a_position_through_the_cli(tmp_path):
    import subprocess
    import sys

    files = []
    for name, text in CLI_CASES.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        files.append(tmp_path / f"{name}.yaml")
    files.append(Path("/dev/zero"))
    for f in files:
        res = subprocess.run([sys.executable, "-m", "kubeforge", "validate", "-i", str(f)], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert res.returncode == 3, (f, res.returncode, res.stdout[-500:], res.stderr[-500:])
        assert "Traceback" not in res.stderr and "bug" not in res.stderr
        assert f"{f}:" in res.stdout + res.stderr
