"""A small YAML subset reader and writer (stdlib only: lab machines have no PyYAML).

Covers what kubeadm configs, kubeconfigs and Kubernetes manifests use: block mappings and sequences
(including sequences indented at their key's level), flow collections, quoted and plain scalars,
block scalars (| and >), comments and multi-document streams. Anchors and tags are not supported;
``load_all`` raises YamlError for them, and the caller decides what to do with such a document.
"""

from __future__ import annotations

import json
import re

_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


class YamlError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _strip_comment(text: str) -> str:
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'" and (i == 0 or text[i - 1] in " \t[{,:-"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _split_documents(text: str) -> list[list[tuple[int, str]]]:
    docs: list[list[tuple[int, str]]] = [[]]
    for no, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("---") and raw[3:4] in ("", " ", "\t"):
            docs.append([])
            rest = raw[3:].strip()
            if rest and not rest.startswith("#"):
                docs[-1].append((no, rest))
            continue
        if raw.startswith("..."):
            continue
        docs[-1].append((no, raw))
    return docs


def scalar(text: str, line: int = 0):
    t = text.strip()
    if t.startswith(("&", "*", "!")):
        raise YamlError(line, f"anchors, aliases and tags are not supported: {t[:20]}")
    if t.startswith("\""):
        if _quote_end(t) != len(t):
            raise YamlError(line, f"bad double-quoted string {t[:40]}")
        return _double_quoted(t[1:-1], line)
    if t.startswith("'"):
        if not t.endswith("'") or len(t) < 2:
            raise YamlError(line, f"unterminated single-quoted string {t[:40]}")
        return t[1:-1].replace("''", "'")
    if t.startswith(("[", "{")):
        value, end = _flow(t, 0, line)
        if t[end:].strip():
            raise YamlError(line, f"unexpected text after flow collection: {t[end:]}")
        return value
    if t in ("", "~", "null", "Null", "NULL"):
        return None
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if _INT.match(t):
        return int(t)
    if _FLOAT.match(t):
        return float(t)
    return t


_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", "\"": "\"", "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}


def _double_quoted(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[nxt]
            try:
                out.append(chr(int(body[i + 2 : i + 2 + n], 16)))
            except ValueError:
                raise YamlError(line, f"bad escape in double-quoted string: {body[i:i + 2 + n]}") from None
            i += 2 + n
        else:
            raise YamlError(line, f"bad escape in double-quoted string: \\{nxt}")
    return "".join(out)


def _flow(t: str, i: int, line: int):
    def skip(j: int) -> int:
        while j < len(t) and t[j] in " \t\n":
            j += 1
        return j

    def item(j: int):
        j = skip(j)
        if t[j] in "[{":
            return _flow(t, j, line)
        if t[j] in "\"'":
            q = t[j]
            k = j + 1
            while k < len(t):
                if t[k] == "\\" and q == "\"":
                    k += 2
                    continue
                if t[k] == q:
                    if q == "'" and t[k + 1 : k + 2] == "'":
                        k += 2
                        continue
                    break
                k += 1
            return scalar(t[j : k + 1], line), k + 1
        k = j
        while k < len(t) and t[k] not in ",]}" and not (t[k] == ":" and t[k + 1 : k + 2] in (" ", "")):
            k += 1
        return scalar(t[j:k], line), k

    opener = t[i]
    closer = "]" if opener == "[" else "}"
    out: list | dict = [] if opener == "[" else {}
    j = skip(i + 1)
    while True:
        if j >= len(t):
            raise YamlError(line, "unterminated flow collection")
        if t[j] == closer:
            return out, j + 1
        if isinstance(out, list):
            v, j = item(j)
            out.append(v)
        else:
            k, j = item(j)
            j = skip(j)
            if t[j : j + 1] != ":":
                raise YamlError(line, "expected ':' in flow mapping")
            v, j = item(j + 1)
            out[str(k)] = v
        j = skip(j)
        if t[j : j + 1] == ",":
            j = skip(j + 1)


def _quote_end(text: str) -> int:
    """Index just past the quoted scalar starting at text[0]; -1 when it is not closed."""
    q, i = text[0], 1
    while i < len(text):
        if q == "\"" and text[i] == "\\":
            i += 2
            continue
        if text[i] == q:
            if q == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i + 1
        i += 1
    return -1


def _key_split(text: str) -> tuple[str, str] | None:
    """'key: value' -> (key, value); None when the line is not a mapping entry."""
    if text.startswith(("\"", "'")):
        q = text[0]
        end = text.find(q, 1)
        while q == "'" and end != -1 and text[end + 1 : end + 2] == "'":
            end = text.find(q, end + 2)
        if end == -1 or text[end + 1 : end + 2] != ":":
            return None
        return str(scalar(text[: end + 1])), text[end + 2 :].strip()
    if text.startswith(("[", "{")):
        return None
    m = re.search(r":(\s|$)", text)
    if not m:
        return None
    return text[: m.start()].strip(), text[m.end() :].strip()


class _Parser:
    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.raw = lines
        self.toks: list[list] = []  # [indent, text, lineno, raw index]
        for idx, (no, raw) in enumerate(lines):
            body = _strip_comment(raw)
            if body.strip():
                self.toks.append([len(body) - len(body.lstrip(" ")), body.strip(), no, idx])
        self.i = 0

    def parse(self):
        if not self.toks:
            return None
        value = self.block(self.toks[0][0])
        if self.i < len(self.toks):
            raise YamlError(self.toks[self.i][2], f"unexpected indentation: {self.toks[self.i][1][:40]}")
        return value

    def block(self, indent: int):
        text = self.toks[self.i][1]
        if text == "-" or text.startswith("- "):
            return self.sequence(indent)
        if _key_split(text) is not None:
            return self.mapping(indent)
        return self.plain_lines(indent - 1)

    def sequence(self, indent: int) -> list:
        out = []
        while self.i < len(self.toks):
            ind, text, no, _ = self.toks[self.i]
            if ind != indent or not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip(" ")
            if not rest:
                self.i += 1
                out.append(self.nested(indent, allow_same=False))
                continue
            if rest[0] in "|>":
                self.i += 1
                out.append(self.block_scalar(indent, rest, self.toks[self.i - 1][3]))
                continue
            # the item's content starts where 'rest' starts: re-parse it as its own block there
            self.toks[self.i] = [ind + (len(text) - len(rest)), rest, no, self.toks[self.i][3]]
            out.append(self.block(self.toks[self.i][0]))
        return out

    def nested(self, indent: int, allow_same: bool):
        if self.i >= len(self.toks):
            return None
        ind, text = self.toks[self.i][0], self.toks[self.i][1]
        if ind > indent:
            return self.block(ind)
        if allow_same and ind == indent and (text == "-" or text.startswith("- ")):
            return self.sequence(indent)
        return None

    def mapping(self, indent: int) -> dict:
        out: dict = {}
        while self.i < len(self.toks):
            ind, text, no, idx = self.toks[self.i]
            if ind != indent:
                if ind > indent:
                    raise YamlError(no, f"unexpected indentation: {text[:40]}")
                break
            kv = _key_split(text)
            if kv is None:
                break
            key, rest = kv
            self.i += 1
            if not rest:
                out[key] = self.nested(indent, allow_same=True)
            elif rest[0] in "|>":
                out[key] = self.block_scalar(indent, rest, idx)
            else:
                out[key] = self.value_with_continuation(indent, rest, no)
        return out

    def value_with_continuation(self, indent: int, rest: str, no: int):
        # multi-line flow collections, quoted strings and plain scalars continue on deeper lines
        parts = [rest]
        while self.i < len(self.toks) and self.toks[self.i][0] > indent and not self._complete(" ".join(parts)):
            parts.append(self.toks[self.i][1])
            self.i += 1
        if rest[0] not in "[{\"'":
            while self.i < len(self.toks) and self.toks[self.i][0] > indent:
                parts.append(self.toks[self.i][1])
                self.i += 1
        return scalar(" ".join(parts), no)

    @staticmethod
    def _complete(text: str) -> bool:
        if text[0] in "[{":
            try:
                _flow(text, 0, 0)
                return True
            except (YamlError, IndexError):
                return False
        if text[0] in "\"'":
            return _quote_end(text) == len(text)
        return True

    def plain_lines(self, indent: int):
        parts = []
        no = self.toks[self.i][2]
        while self.i < len(self.toks) and self.toks[self.i][0] > indent:
            parts.append(self.toks[self.i][1])
            self.i += 1
        return scalar(" ".join(parts), no)

    def block_scalar(self, indent: int, header: str, idx: int) -> str:
        # read raw lines (comments and blank lines are content here)
        lines = []
        j = idx + 1
        while j < len(self.raw):
            raw = self.raw[j][1]
            if raw.strip() and len(raw) - len(raw.lstrip(" ")) <= indent:
                break
            lines.append(raw)
            j += 1
        while self.i < len(self.toks) and self.toks[self.i][3] < j:
            self.i += 1
        while lines and not lines[-1].strip():
            lines.pop()
        nonblank = [ln for ln in lines if ln.strip()]
        cut = min((len(ln) - len(ln.lstrip(" ")) for ln in nonblank), default=0)
        body = [ln[cut:] for ln in lines]
        text = "\n".join(body) if header[0] == "|" else " ".join(b for b in body if b)
        return text if "-" in header else text + "\n"


def load_all(text: str) -> list:
    """Every document of a YAML stream (empty documents dropped)."""
    docs = []
    for lines in _split_documents(text):
        value = _Parser(lines).parse()
        if value is not None:
            docs.append(value)
    return docs


def load(text: str):
    docs = load_all(text)
    return docs[0] if docs else None


_PLAIN_OK = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:@=+-]*$")


def _scalar_out(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v)
    if _PLAIN_OK.match(s) and not s.endswith(":") and scalar(s) == s:
        return s
    return json.dumps(s)


def dump(obj, indent: int = 0) -> str:
    """Block-style YAML that ``load`` (and any YAML reader) reads back to the same value."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = []
        for k, v in obj.items():
            key = _scalar_out(str(k))
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{key}:\n{dump(v, indent + 2 if isinstance(v, dict) else indent)}")
            else:
                out.append(f"{pad}{key}: {_flow_out(v)}\n")
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        out = []
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = dump(v, indent + 2)
                out.append(f"{pad}- {inner[indent + 2:]}")
            else:
                out.append(f"{pad}- {_flow_out(v)}\n")
        return "".join(out)
    return pad + _scalar_out(obj) + "\n"


def _flow_out(v) -> str:
    if v == {}:
        return "{}"
    if v == []:
        return "[]"
    return _scalar_out(v)


def dump_all(docs: list) -> str:
    return "---\n".join(dump(d) for d in docs)
