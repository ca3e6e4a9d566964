"""The container images a local CNI manifest runs, read when the inventory is loaded so the model
knows them like kubeadm's (kubeforge.model.images): every container, init container and ephemeral
container of every pod template in every document, CustomResourceDefinitions aside (their schemas
describe pods, they run none).

References are normalized as containerd's CRI plugin names what it pulls, so they compare equal to
``ctr -n k8s.io images ls -q``: a name without a registry is on docker.io (``docker.io/library/`` for
a single path component), a reference without a tag or digest is ``:latest``
(github.com/distribution/reference, ParseNormalizedNamed and TagNameOnly).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def normalize_ref(ref: str) -> str:
    name, at, digest = ref.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
    first, slash, rest = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        first, rest = "docker.io", name if "/" in name else f"library/{name}"
    elif first == "index.docker.io":
        first = "docker.io"
    name = f"{first}/{rest}"
    if at:
        return f"{name}@{digest}"
    return f"{name}:{tag or 'latest'}"


def _walk(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _CONTAINER_LISTS and isinstance(value, list):
                found += [c["image"] for c in value if isinstance(c, dict) and isinstance(c.get("image"), str)]
            else:
                _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)


def manifest_images(text: str) -> tuple[str, ...]:
    """Every image ``text`` (a multi-document YAML manifest) runs, normalized, sorted, once each.
    Raises ValueError when it is not YAML."""
    try:
        docs = list(YAML(typ="safe").load_all(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"not YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    found: list[str] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") != "CustomResourceDefinition":
            _walk(doc, found)
    return tuple(sorted({normalize_ref(r.strip()) for r in found if r.strip()}))
