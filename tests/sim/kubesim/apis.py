"""Which API group/versions the simulated API server serves, per minor — the simulator's own copy of
the real rule (it must not read kubeforge's data, or a test of kubeforge's scan would check the data
against itself).

Sources: the Kubernetes deprecated-API migration guide
(https://kubernetes.io/docs/reference/using-api/deprecation-guide/) for flowcontrol; for alpha/beta
versions the generated API of each minor (github.com/Arnavion/k8s-openapi, src/v1_NN/api, built from
upstream's OpenAPI spec): a version is served from the first minor whose tree has it to the last.
The simulator serves every version a minor has, as if ``--runtime-config=api/all=true`` (real clusters
serve alpha and new beta versions only when enabled).

Kinds outside this table (and not defined by a stored CRD) are accepted in any version, as before.
"""

from __future__ import annotations

# (group/version, resource, kind, first minor served, first minor NOT served or None)
SERVED: tuple[tuple[str, str, str, int, int | None], ...] = (
    ("v1", "configmaps", "ConfigMap", 0, None),
    ("v1", "namespaces", "Namespace", 0, None),
    ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", 16, None),
    ("apiextensions.k8s.io/v1beta1", "customresourcedefinitions", "CustomResourceDefinition", 7, 22),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "flowschemas", "FlowSchema", 23, 29),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "prioritylevelconfigurations", "PriorityLevelConfiguration", 23, 29),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "flowschemas", "FlowSchema", 26, 32),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "prioritylevelconfigurations", "PriorityLevelConfiguration", 26, 32),
    ("flowcontrol.apiserver.k8s.io/v1", "flowschemas", "FlowSchema", 29, None),
    ("flowcontrol.apiserver.k8s.io/v1", "prioritylevelconfigurations", "PriorityLevelConfiguration", 29, None),
    ("admissionregistration.k8s.io/v1beta1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", 28, 34),
    ("admissionregistration.k8s.io/v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", 30, None),
    ("resource.k8s.io/v1alpha3", "resourceclaims", "ResourceClaim", 31, 34),
    ("resource.k8s.io/v1", "resourceclaims", "ResourceClaim", 34, None),
    ("storage.k8s.io/v1alpha1", "volumeattributesclasses", "VolumeAttributesClass", 29, 35),
    ("storage.k8s.io/v1beta1", "volumeattributesclasses", "VolumeAttributesClass", 31, None),
    ("storage.k8s.io/v1", "volumeattributesclasses", "VolumeAttributesClass", 34, None),
    ("storagemigration.k8s.io/v1alpha1", "storageversionmigrations", "StorageVersionMigration", 30, 35),
    ("storagemigration.k8s.io/v1beta1", "storageversionmigrations", "StorageVersionMigration", 35, None),
    ("scheduling.k8s.io/v1alpha1", "workloads", "Workload", 35, 36),
    ("scheduling.k8s.io/v1alpha2", "workloads", "Workload", 36, 37),
    ("scheduling.k8s.io/v1alpha2", "podgroups", "PodGroup", 36, 37),
    ("scheduling.k8s.io/v1beta1", "workloads", "Workload", 37, None),
    ("scheduling.k8s.io/v1beta1", "podgroups", "PodGroup", 37, None),
)
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "FlowSchema",
                  "PriorityLevelConfiguration", "ValidatingAdmissionPolicy", "VolumeAttributesClass",
                  "StorageVersionMigration", "StorageClass", "PriorityClass"}


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _served_at(first: int, until: int | None, minor: int) -> bool:
    return first <= minor and (until is None or minor < until)


def crd_for(st: dict, group: str, kind: str) -> dict | None:
    for o in st["objects"].values():
        if o["kind"] == "CustomResourceDefinition":
            spec = o.get("spec") or {}
            if spec.get("group") == group and (spec.get("names") or {}).get("kind") == kind:
                return o
    return None


def serves(st: dict, api_version: str, kind: str, minor: int) -> bool:
    """Whether an API server of ``minor`` accepts ``kind`` in ``api_version`` (kubectl's REST mapping)."""
    group = group_of(api_version)
    known = [e for e in SERVED if e[2] == kind and group_of(e[0]) == group]
    if known:
        return any(e[0] == api_version and _served_at(e[3], e[4], minor) for e in known)
    crd = crd_for(st, group, kind)
    if crd is not None:
        version = api_version.rpartition("/")[2]
        return any(v.get("name") == version and v.get("served") for v in (crd.get("spec") or {}).get("versions") or [])
    return True  # a kind the simulator does not model: kept by identity in whatever version it came


def preferred(st: dict, api_version: str, kind: str, minor: int) -> str:
    """The version the API server returns an object in: its newest served version of that kind (the
    table lists versions oldest first), else the one it was written in."""
    group = group_of(api_version)
    known = [e[0] for e in SERVED if e[2] == kind and group_of(e[0]) == group and _served_at(e[3], e[4], minor)]
    if known:
        return known[-1]
    crd = crd_for(st, group, kind)
    if crd is not None:
        served = [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
        storage = [v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")]
        if storage and storage[0] in served:
            return f"{group}/{storage[0]}"
    return api_version


def resolve(st: dict, name: str, minor: int) -> tuple[str, str] | None:
    """``kubectl get NAME``: (group, kind) for a plural, ``plural.group``, kind or ``kind.group`` the
    server of ``minor`` serves in some version; None when it has no such resource type."""
    plural, _, group = name.lower().partition(".")
    candidates = [(group_of(e[0]), e[2], e[1]) for e in SERVED if _served_at(e[3], e[4], minor)]
    for o in st["objects"].values():
        if o["kind"] == "CustomResourceDefinition":
            spec = o.get("spec") or {}
            names = spec.get("names") or {}
            if any(v.get("served") for v in spec.get("versions") or []) and names.get("plural"):
                candidates.append((spec.get("group", ""), names.get("kind", ""), names["plural"]))
    candidates += [("", "ConfigMap", "cm"), ("apiextensions.k8s.io", "CustomResourceDefinition", "crd"),
                   ("apiextensions.k8s.io", "CustomResourceDefinition", "crds")]
    for g, kind, res in candidates:
        if (group in ("", g)) and plural in (res, kind.lower()):
            return g, kind
    return None
