"""load(): YAML with positions -> schema -> cross-field rules -> frozen Cluster, every problem at once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from kubeforge.errors import InventoryError, Problem
from kubeforge.inventory import rules_hosts, rules_images, rules_paths, rules_spec
from kubeforge.inventory.build import build
from kubeforge.inventory.context import Context
from kubeforge.inventory.messages import clip, problems_from_pydantic, where
from kubeforge.inventory.schema import API_VERSION, KIND, SPEC_SECTIONS, ClusterDoc, HostDoc, SpecDoc
from kubeforge.inventory.yamldoc import MAX_BYTES, Document, YamlSyntaxError, parse
from kubeforge.model import Cluster

RULES = (
    rules_paths.check_paths,
    rules_spec.check_metadata,
    rules_spec.check_versions,
    rules_hosts.check_host_entries,
    rules_hosts.check_topology,
    rules_hosts.check_endpoint,
    rules_spec.check_network,
    rules_spec.check_etcd,
    rules_spec.check_ssh,
    rules_spec.check_packages,
    rules_images.check_images,
    rules_spec.check_upgrade,
    rules_spec.check_pki_kubelet,
)


@dataclass(frozen=True)
class LoadResult:
    cluster: Cluster
    warnings: list[Problem]


@cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _fail(file: str, line: int, col: int, message: str, where: str = "") -> InventoryError:
    return InventoryError([Problem(file, line, col, where, message)])


def load(path: Path | str) -> LoadResult:
    """Load and validate an inventory file. Raises InventoryError listing every problem."""
    display = str(path)
    p = Path(path)
    try:
        # bounded: /dev/zero or a multi-GB file is refused after MAX_BYTES, never read whole
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(display, 0, 0, "no such file") from None
    except IsADirectoryError:
        raise _fail(display, 0, 0, "is a directory, not an inventory file") from None
    except OSError as exc:
        raise _fail(display, 0, 0, f"cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path
        raise _fail(display, 0, 0, "cannot read: the path contains a NUL character") from None
    if len(raw) > MAX_BYTES:
        raise _fail(display, 0, 0, f"larger than {MAX_BYTES >> 20} MiB; not an inventory file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(display, line, 1, "not UTF-8 text") from None
    return loads(text, file=display, source=p.absolute())


def load_cluster(path: Path | str) -> Cluster:
    """The validated model only (warnings dropped); raises InventoryError."""
    return load(path).cluster


def loads(text: str, *, file: str = "inventory.yaml", source: Path | None = None) -> LoadResult:
    """Validate inventory text. ``file`` is shown in messages; ``source`` anchors relative paths."""
    source = source or Path(file).absolute()
    try:
        doc = parse(text.lstrip("\ufeff"))
    except YamlSyntaxError as exc:
        raise _fail(file, exc.line, exc.col, clip(exc.message)) from None
    problems = [Problem(file, p.line, p.col, clip(where(p.path)), clip(p.message)) for p in doc.problems]
    if doc.data is None:
        hint = f"expected a Cluster document (apiVersion: {API_VERSION}, kind: {KIND})"
        raise InventoryError(problems + [Problem(file, 0, 0, "", f"the file is empty; {hint}")])
    if not isinstance(doc.data, dict):
        line, col = doc.positions.value(())
        raise InventoryError(problems + [Problem(file, line, col, "", "expected a mapping with apiVersion, kind, "
                                                 f"metadata and spec; the document is {_kind(doc.data)}")])
    ctx = _validate(doc, file, source)
    problems += ctx.problems if ctx else []
    errors = [p for p in problems if p.severity == "error"]
    if errors or ctx is None:
        raise InventoryError(problems)
    cluster = build(ctx, source)
    return LoadResult(cluster=cluster, warnings=sorted(problems))


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__} value"


def _validate(doc: Document, file: str, source: Path) -> Context | None:
    """Schema then rules. Returns the context (its problems included), or None when nothing to check."""
    data, pos = doc.data, doc.positions
    problems: list[Problem] = []
    try:
        model = ClusterDoc.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_pydantic(exc.errors(include_url=False), data, pos, file, ClusterDoc)
        model = None
    if model is not None:
        hosts = list(enumerate(model.spec.hosts))
        ctx = Context(file, pos, data, model.spec, set(), hosts, source.parent, model.metadata.name)
    else:
        partial = _partial(data, pos, file, source)
        if partial is None:
            # without a usable spec there is nothing more to check; report what the schema found
            return _only(problems, file, pos, data, source)
        ctx = partial
    ctx.problems.extend(problems)
    for rule in RULES:
        rule(ctx)
    return ctx


def _only(problems: list[Problem], file: str, pos, data, source: Path) -> Context:
    ctx = Context(file, pos, data, SpecDoc.model_construct(), {"*"}, [], source.parent, None)
    ctx.problems.extend(problems)
    return ctx


def _partial(data: dict, pos, file: str, source: Path) -> Context | None:
    """Validate each spec section on its own, so rules can run on the sections that are fine."""
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return None
    fields: dict[str, Any] = {}
    invalid: set[str] = set()
    for name, (alias, _annotation) in SPEC_SECTIONS.items():
        if alias not in spec or name == "kubernetes_version":
            continue
        try:
            fields[name] = _adapter(_field_type(SpecDoc.model_fields[name])).validate_python(spec[alias])
        except ValidationError:
            invalid.add(name)
    hosts: list[tuple[int, HostDoc]] = []
    raw_hosts = spec.get("hosts")
    if isinstance(raw_hosts, list) and raw_hosts:
        adapter = _adapter(HostDoc)
        for i, h in enumerate(raw_hosts):
            try:
                hosts.append((i, adapter.validate_python(h)))
            except ValidationError:
                host, complete = _partial_host(h)
                if host is not None:
                    hosts.append((i, host))
                if not complete:
                    invalid.add("hosts")
    else:
        invalid.add("hosts")
    if not isinstance(spec.get("kubernetesVersion"), str):
        invalid.add("kubernetes_version")
    defaults = SpecDoc.model_construct()
    for name in SpecDoc.model_fields:
        if name not in fields and name not in ("hosts", "kubernetes_version"):
            fields[name] = getattr(defaults, name)
    model = SpecDoc.model_construct(hosts=[h for _, h in hosts], kubernetes_version=spec.get("kubernetesVersion"), **fields)
    meta = data.get("metadata")
    cluster_name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    return Context(file, pos, data, model, invalid, hosts, source.parent, cluster_name)


def _field_type(f: Any) -> Any:
    """A field's annotation with its constraints (ge, min_length...) attached."""
    return Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation


def _partial_host(raw: Any) -> tuple[HostDoc | None, bool]:
    """A host whose entry has problems, with the fields that are fine (the others None or empty).

    ``complete`` is False when its roles are unknown, so counts of roles cannot be trusted.
    """
    if not isinstance(raw, dict):
        return None, False
    values: dict[str, Any] = {"name": None, "address": None, "roles": []}
    complete = True
    for name, f in HostDoc.model_fields.items():
        alias = f.alias or name
        if alias not in raw:
            complete = complete and not (name == "roles")
            continue
        try:
            values[name] = _adapter(_field_type(f)).validate_python(raw[alias])
        except ValidationError:
            complete = complete and name != "roles"
    return HostDoc.model_construct(**values), complete
