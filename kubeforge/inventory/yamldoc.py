"""Read a YAML document into plain Python values plus the line:col of every key and value.

The node graph from ruamel's composer carries a start mark for every node, which is exactly what
the round-trip loader's ``.lc`` exposes, without the cost of building comment-preserving
containers. ruamel's C parser is used when ``ruamel.yaml.clib`` is installed (about ten times
faster on a 1,000-host inventory); the pure-Python parser gives the same nodes otherwise.

Duplicate keys are found here, while walking the nodes, so both positions are known and the
problem joins the others instead of aborting the load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

Path_ = tuple  # a document path: ("spec", "hosts", 2, "roles")

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# Aliases can expand a small file into a huge tree ("billion laughs"); an inventory never needs that.
_MAX_NODES = 200_000
# Deep nesting overflows the C parser's stack (a crash, not an exception) and Python's recursion
# limit; an inventory is at most a handful of levels deep.
_MAX_DEPTH = 100
_BRACKETS = re.compile(r"[\[\]{}]")
# "- - - x" and "? ? ? x" nest one level per indicator on a single line
_INDICATOR_RUN = re.compile(r"(?:[-?:][ \t]+){" + f"{_MAX_DEPTH:d}" + ",}")
# An inventory of 1,000 hosts is ~150 KB; anything past this is not an inventory (and /dev/zero never ends).
MAX_BYTES = 16 << 20


@dataclass
class Positions:
    """1-based (line, col) of values and of mapping keys, by document path."""

    values: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    keys: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def value(self, path: tuple) -> tuple[int, int]:
        """Where the value at ``path`` starts; the nearest known ancestor when it is absent."""
        p = tuple(path)
        while p:
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def key(self, path: tuple) -> tuple[int, int]:
        """Where the key naming ``path`` is written; the value's position when it has no key."""
        p = tuple(path)
        if p in self.keys:
            return self.keys[p]
        return self.value(p)


@dataclass
class YamlProblem:
    line: int
    col: int
    path: tuple
    message: str


@dataclass
class Document:
    data: Any
    positions: Positions
    problems: list[YamlProblem]


class YamlSyntaxError(Exception):
    """The text is not YAML at all; carries the position the parser stopped at."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


class _Yaml12Resolver(VersionedResolver):
    """YAML 1.2 tag resolution without asking the scanner for the document's version per scalar.

    The stock property probes the scanner through a raised AttributeError for every scalar when
    the C parser is used, which was a third of the load time of a 1,000-host inventory.
    """

    @property
    def processing_version(self) -> tuple[int, int]:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        table = self.__dict__.get("_kf_table")
        if table is None:
            table = self.__dict__["_kf_table"] = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
        return table


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=False)
    y.Resolver = _Yaml12Resolver
    y.allow_duplicate_keys = True  # the walker below reports duplicates with both positions
    return y


def _pos(node: Node) -> tuple[int, int]:
    m = node.start_mark
    return (m.line + 1, m.column + 1)


class _Walker:
    def __init__(self, constructor: Any) -> None:
        self.constructor = constructor
        self.positions = Positions()
        self.problems: list[YamlProblem] = []
        self.count = 0
        self.merging: set[int] = set()  # mapping nodes being merged right now: a cycle is refused

    def walk(self, node: Node, path: tuple) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise YamlSyntaxError(*_pos(node), "document too large (aliases expand beyond 200,000 nodes)")
        if len(path) > _MAX_DEPTH:
            raise YamlSyntaxError(*_pos(node), f"nested deeper than {_MAX_DEPTH} levels")
        self.positions.values.setdefault(path, _pos(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)  # the composer makes only these three kinds
        return self._scalar(node, path)

    def _scalar(self, node: ScalarNode, path: tuple) -> Any:
        if node.tag == _STR_TAG:  # most values: skip the constructor's dispatch
            return node.value
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, TypeError) as exc:
            line, col = _pos(node)
            why = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.problems.append(YamlProblem(line, col, path, f"cannot read value {node.value!r}: {why}"))
            return node.value
        # binary and other exotic tags produce objects no field accepts; keep the text instead
        if isinstance(value, (bytes, bytearray, set)):
            return node.value
        return value

    def _mapping(self, node: MappingNode, path: tuple) -> dict:
        out: dict = {}
        first_at: dict = {}
        merged: list[MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                line, col = _pos(key_node)
                self.problems.append(YamlProblem(line, col, path, "a key must be a plain string, not a list or mapping"))
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                key = str(key_node.value)
            if key in first_at:
                line, col = _pos(key_node)
                self.problems.append(
                    YamlProblem(line, col, path + (key,), f"duplicate key '{key}' (first defined at line {first_at[key]})")
                )
                continue
            first_at[key] = _pos(key_node)[0]
            self.positions.keys[path + (key,)] = _pos(key_node)
            out[key] = self.walk(value_node, path + (key,))
        # YAML merge keys (<<: *defaults): explicit keys win, earlier sources win over later ones
        for source in merged:
            if id(source) in self.merging or source is node:
                line, col = _pos(source)
                self.problems.append(YamlProblem(line, col, path, "'<<' merges a mapping into itself"))
                continue
            self.merging.add(id(source))
            try:
                for k, v in self._mapping(source, path).items():
                    out.setdefault(k, v)
            finally:
                self.merging.discard(id(source))
        return out

    def _merge_sources(self, node: Node, path: tuple) -> list[MappingNode]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        line, col = _pos(node)
        self.problems.append(YamlProblem(line, col, path, "'<<' must merge a mapping or a list of mappings"))
        return []


def _line_col(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _check_nesting(text: str) -> None:
    """Refuse pathological nesting before the parser sees it (brackets in quotes count too)."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        if m.group() in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                raise YamlSyntaxError(*_line_col(text, m.start()), f"nested deeper than {_MAX_DEPTH} levels")
        elif depth:
            depth -= 1
    run = _INDICATOR_RUN.search(text)
    if run:
        raise YamlSyntaxError(*_line_col(text, run.start()), f"nested deeper than {_MAX_DEPTH} levels")


def parse(text: str) -> Document:
    """Parse one YAML document. Raises YamlSyntaxError when the text is not YAML."""
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(1, 1, f"larger than {MAX_BYTES >> 20} MiB; not an inventory")
    _check_nesting(text)
    y = _yaml()
    try:
        node = y.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.problem} ({exc.context})"
        raise YamlSyntaxError(line, col, f"invalid YAML: {what}") from None
    except ReaderError as exc:
        line, col = _line_col(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise YamlSyntaxError(line, col, f"invalid YAML: character U+{code:04X} is not allowed ({exc.reason})") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise YamlSyntaxError(1, 1, f"invalid YAML: {first}") from None
    positions = Positions()
    if node is None:
        return Document(None, positions, [])
    walker = _Walker(y.constructor)
    data = walker.walk(node, ())
    return Document(data, walker.positions, walker.problems)
