"""The removed-API scan: which objects are still written in API versions an upgrade hop stops serving.

One read-only script on the first control plane (kubectl with admin.conf, grep), one pure parser:

    cmd = removed_apis_probe(apis)                  # apis: model.removed_apis.removed_between(...)
    scan = parse_removed_apis_scan(result.stdout, apis, host="cp-1")
    scan.objects   # StoredObject(kind, namespace, name, api_version, found_by)
    scan.problems  # what could not be read (the scan is then incomplete)

What counts as "written in a removed version" (docs/upgrade.md says why):
- an object of a listed resource whose ``metadata.managedFields`` has an entry with that apiVersion
  (a client or controller wrote it in that version and still owns fields);
- an object whose ``kubectl.kubernetes.io/last-applied-configuration`` names that apiVersion (the
  manifest the operator keeps applying uses it: the next ``kubectl apply`` fails after the hop);
- an object the cluster returns in that version (the only version that serves it now);
- a CustomResourceDefinition whose ``status.storedVersions`` names a version it no longer serves or
  defines, or a removed group/version;
- the kubeadm-config ConfigMap, or a kubeadm config file under /etc/kubernetes, in a removed kubeadm
  config API.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubeforge.model.kubeadm_paths import KUBECTL, KUBERNETES_DIR
from kubeforge.model.removed_apis import RemovedAPI
from kubeforge.transport.base import Command, Transport

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
KUBEADM_FILES = KUBERNETES_DIR
_MARK = "@@removedapis "
_NOT_SERVED = re.compile(r"doesn't have a resource type|could not find the requested resource|no matches for kind")
_NOT_FOUND = re.compile(r'NotFound|not found')
_API_VERSION_LINE = re.compile(r"(?m)^apiVersion:\s*['\"]?([^\s'\"]+)")


@dataclass(frozen=True)
class StoredObject:
    kind: str
    namespace: str  # "" for cluster-scoped objects; the host for a file
    name: str
    api_version: str  # the removed group/version it was found in
    found_by: str  # how: "managedFields (manager kubectl-client-side-apply, Update)", ...

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} in {self.api_version} ({self.found_by})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "apiVersion": self.api_version, "foundBy": self.found_by}


@dataclass(frozen=True)
class RemovedAPIScan:
    objects: tuple[StoredObject, ...] = ()
    problems: tuple[str, ...] = ()  # sections that could not be read: the scan is incomplete
    apis: tuple[RemovedAPI, ...] = field(default=(), compare=False)  # what was looked for

    def in_versions(self, group_versions: set[str]) -> list[StoredObject]:
        return [o for o in self.objects if o.api_version in group_versions]


# --- the command -----------------------------------------------------------------------------------

def _resources(apis: Sequence[RemovedAPI]) -> list[str]:
    return list(dict.fromkeys(a.qualified(r) for a in apis if not a.kubeadm for r in a.resources))


def removed_apis_probe(apis: Sequence[RemovedAPI]) -> Command:
    """List every resource the given removals touch, the CRDs, the kubeadm-config ConfigMap and the
    kubeadm config files. Each section: a marker line with its name and kubectl's exit status, then
    its output. Read-only."""
    k = KUBECTL
    # scripts run under `set -euo pipefail`: a failing kubectl is recorded, not fatal
    lines = ["section() { rc=0; out=$(\"$@\" 2>&1) || rc=$?; }"]
    for r in _resources(apis):
        q = shlex.quote(r)
        lines.append(f"section {k} get {q} -A -o json; echo \"{_MARK}list {r} $rc\"; printf '%s\\n' \"$out\"")
    lines.append(f"section {k} get {CRDS} -o json; echo \"{_MARK}crds - $rc\"; printf '%s\\n' \"$out\"")
    kubeadm = [a.group_version for a in apis if a.kubeadm]
    if kubeadm:
        lines.append(f"section {k} -n kube-system get configmap kubeadm-config -o json; "
                     f"echo \"{_MARK}kubeadm-config - $rc\"; printf '%s\\n' \"$out\"")
        for gv in kubeadm:
            pattern = shlex.quote("^apiVersion:[[:space:]]*['\"]?" + re.escape(gv))
            lines.append(f"echo \"{_MARK}files {gv} 0\"; "
                         f"grep -rlE {pattern} {KUBEADM_FILES} --include='*.yaml' --include='*.yml' 2>/dev/null || true")
    return Command(script="\n".join(lines) + "\n", sudo=True, timeout=120, check=False,
                   description="list objects stored in API versions the target no longer serves (read-only)")


# --- the parser ------------------------------------------------------------------------------------

def _sections(text: str) -> list[tuple[str, str, int, str]]:
    out: list[tuple[str, str, int, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(_MARK):
            parts = line[len(_MARK):].split()
            if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
                raise ValueError(f"malformed section marker: {line[:120]!r}")
            out.append((parts[0], parts[1], int(parts[2]), []))
        elif out:
            out[-1][3].append(line)
    return [(kind, name, rc, "\n".join(body).strip()) for kind, name, rc, body in out]


def _tail(body: str) -> str:
    lines = [ln for ln in body.splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:300]


def _items(body: str) -> list[dict]:
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    items = doc.get("items") if "items" in doc else [doc]
    return [i for i in items or [] if isinstance(i, dict)]


def _last_applied_version(meta: dict) -> str | None:
    raw = (meta.get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc.get("apiVersion") if isinstance(doc, dict) else None


def _written_in(item: dict, gv: str) -> list[str]:
    """How ``item`` shows it was written in ``gv`` (empty when it does not)."""
    meta = item.get("metadata") or {}
    how = []
    for mf in meta.get("managedFields") or []:
        if isinstance(mf, dict) and mf.get("apiVersion") == gv:
            how.append(f"managedFields: manager {mf.get('manager', '?')}, {mf.get('operation', '?')}")
    if _last_applied_version(meta) == gv:
        how.append(f"annotation {LAST_APPLIED}")
    if item.get("apiVersion") == gv:
        how.append("the cluster serves it only in this version")
    return how


def _scan_list(resource: str, body: str, apis: Sequence[RemovedAPI]) -> list[StoredObject]:
    plural, _, group = resource.partition(".")
    wanted = [a for a in apis if not a.kubeadm and a.group == group and plural in a.resources]
    out = []
    for item in _items(body):
        meta = item.get("metadata") or {}
        for api in wanted:
            how = _written_in(item, api.group_version)
            if how:
                kind = item.get("kind") or (api.kinds[0] if len(api.kinds) == 1 else plural)
                out.append(StoredObject(kind, meta.get("namespace") or "", meta.get("name") or "?",
                                        api.group_version, "; ".join(how)))
    return out


def _scan_crds(body: str, apis: Sequence[RemovedAPI]) -> list[StoredObject]:
    removed = {a.group_version: a for a in apis if not a.kubeadm}
    out = []
    for crd in _items(body):
        name = (crd.get("metadata") or {}).get("name") or "?"
        spec = crd.get("spec") or {}
        group = spec.get("group") or name.partition(".")[2]
        served = {v.get("name"): bool(v.get("served")) for v in spec.get("versions") or [] if isinstance(v, dict)}
        for sv in (crd.get("status") or {}).get("storedVersions") or []:
            gv = f"{group}/{sv}"
            if sv not in served:
                why = f"status.storedVersions names {sv}, which spec.versions no longer defines"
            elif not served[sv]:
                why = f"status.storedVersions names {sv}, which the CRD no longer serves"
            elif gv in removed:
                why = f"status.storedVersions names {sv}, removed in {removed[gv].removed_in_str}"
            else:
                continue
            out.append(StoredObject("CustomResourceDefinition", "", name, gv, why + "; objects may still be stored in it"))
    return out


def _scan_kubeadm_config(body: str, apis: Sequence[RemovedAPI]) -> list[StoredObject]:
    removed = {a.group_version for a in apis if a.kubeadm}
    out = []
    for cm in _items(body):
        for key, value in sorted((cm.get("data") or {}).items()):
            m = _API_VERSION_LINE.search(value or "")
            if m and m.group(1) in removed:
                out.append(StoredObject("ConfigMap", "kube-system", "kubeadm-config", m.group(1),
                                        f"data.{key} is written in it"))
    return out


def parse_removed_apis_scan(text: str, apis: Sequence[RemovedAPI], *, host: str) -> RemovedAPIScan:
    """The probe's output -> what is stored in the removed versions; ValueError when it is not the
    probe's output at all."""
    sections = _sections(text)
    if not sections:
        raise ValueError("no scan sections in the output")
    objects: list[StoredObject] = []
    problems: list[str] = []
    for kind, name, rc, body in sections:
        what = {"list": f"kubectl get {name}", "crds": f"kubectl get {CRDS}",
                "kubeadm-config": "kubectl get configmap kubeadm-config -n kube-system"}.get(kind, kind)
        if kind == "files":
            objects += [StoredObject("kubeadm config file", host, path, name, f"a file on {host}")
                        for path in body.splitlines() if path.strip()]
            continue
        if rc != 0:
            if kind == "list" and _NOT_SERVED.search(body):
                continue  # the cluster does not serve the resource at all: nothing can be read or written in it
            if kind == "kubeadm-config" and _NOT_FOUND.search(body):
                continue
            problems.append(f"{what} on {host} exited {rc}: {_tail(body)}")
            continue
        try:
            if kind == "list":
                objects += _scan_list(name, body, apis)
            elif kind == "crds":
                objects += _scan_crds(body, apis)
            elif kind == "kubeadm-config":
                objects += _scan_kubeadm_config(body, apis)
            else:
                problems.append(f"unknown scan section {kind!r}")
        except (ValueError, AttributeError, TypeError) as exc:
            problems.append(f"{what} on {host}: unreadable output ({exc})"[:300])
    return RemovedAPIScan(tuple(objects), tuple(problems), tuple(apis))


def run_removed_apis_scan(transport: Transport, apis: Sequence[RemovedAPI], *, host: str) -> RemovedAPIScan:
    """Run the scan on ``host`` (the first control plane) and parse it; ValueError, ending with the
    last line kubectl or the shell said, when the output is not the scan's."""
    res = transport.run(removed_apis_probe(apis))
    try:
        return parse_removed_apis_scan(res.stdout, apis, host=host)
    except ValueError as exc:
        tail = (res.stderr.strip() or res.stdout.strip() or f"exit {res.exit_status}").splitlines()[-1][:300]
        raise ValueError(f"{exc}: {tail}") from None
