"""Which API versions each Kubernetes minor no longer serves: the ``removedAPIs`` section of the one
versions data file (kubeforge/model/versions.yaml), every entry with its source.

    for api in removed_between((1, 34), (1, 35)):   # what a 1.34 -> 1.35 hop stops serving
        api.group_version, api.resources, api.use

A hop into minor N is checked against the entries of every minor after the current one up to N:
versions removed earlier were already unserved before the hop, so the hop changes nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ruamel.yaml import YAML

DATA_FILE = Path(__file__).with_name("versions.yaml")


@dataclass(frozen=True)
class RemovedAPI:
    group_version: str  # "flowcontrol.apiserver.k8s.io/v1beta3"
    removed_in: tuple[int, int]  # the first minor that does not serve it
    resources: tuple[str, ...]  # plural resource names under it ("flowschemas")
    kinds: tuple[str, ...]
    use: str  # what to migrate to
    source: str
    kubeadm: bool = False  # a kubeadm config API, not one the API server serves

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.group_version.rpartition("/")[2]

    @property
    def removed_in_str(self) -> str:
        return f"{self.removed_in[0]}.{self.removed_in[1]}"

    def qualified(self, resource: str) -> str:
        """``flowschemas.flowcontrol.apiserver.k8s.io``: what kubectl lists regardless of version."""
        return f"{resource}.{self.group}" if self.group else resource


class RemovedAPIDataError(ValueError):
    """The data file is malformed: a bug in kubeforge's own data, caught by its unit tests."""


def _minor(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        raise RemovedAPIDataError(f"{DATA_FILE.name}: removedAPIs: {text!r} is not a minor like \"1.35\"") from None


def parse_removed_apis(doc: object) -> tuple[RemovedAPI, ...]:
    """The ``removedAPIs`` mapping of a loaded data document -> entries sorted by minor."""
    section = doc.get("removedAPIs") if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise RemovedAPIDataError(f"{DATA_FILE.name}: no removedAPIs mapping")
    out = []
    for minor, entries in section.items():
        for i, e in enumerate(entries or []):
            where = f"{DATA_FILE.name}: removedAPIs.{minor}[{i}]"
            if not isinstance(e, dict) or "/" not in str(e.get("groupVersion", "")) or not e.get("source"):
                raise RemovedAPIDataError(f"{where}: needs groupVersion (group/version) and source")
            kubeadm = bool(e.get("kubeadm", False))
            resources = tuple(e.get("resources") or ())
            if not kubeadm and not resources:
                raise RemovedAPIDataError(f"{where}: an API server entry needs resources")
            out.append(RemovedAPI(str(e["groupVersion"]), _minor(minor), resources, tuple(e.get("kinds") or ()),
                                  str(e.get("use", "")), str(e["source"]), kubeadm))
    return tuple(sorted(out, key=lambda a: (a.removed_in, a.group_version)))


@cache
def removed_apis() -> tuple[RemovedAPI, ...]:
    return parse_removed_apis(YAML(typ="safe").load(DATA_FILE.read_text(encoding="utf-8")))


def removed_between(current: tuple[int, int], target: tuple[int, int]) -> list[RemovedAPI]:
    """Entries removed by a minor after ``current`` up to and including ``target``."""
    return [a for a in removed_apis() if current < a.removed_in <= target]
