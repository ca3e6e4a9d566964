"""A minimal RBAC authoriser: the roles and bindings kubeadm's cluster has from the start, plus the
ClusterRoles, Roles, ClusterRoleBindings and RoleBindings applied through the API.

Built in, as in a kubeadm cluster (kubernetes.io/docs/reference/access-authn-authz/rbac/#default-roles-
and-role-bindings; kubeadm since 1.29 binds its admin.conf group, kubernetes.io/docs/reference/setup-
tools/kubeadm/implementation-details — "kubeadm:cluster-admins"):

- ``cluster-admin`` bound to the groups ``system:masters`` and ``kubeadm:cluster-admins``;
- the kubelets (group ``system:nodes``) may read nodes, pods and kube-system's ConfigMaps and update
  their node's status — only their own node (the Node authoriser);
- everyone, anonymous included, may read /healthz, /livez, /readyz and /version
  (``system:public-info-viewer``), and the cluster-info ConfigMap (kubeadm join's discovery).

Anything else is refused with the API server's message, e.g. ``nodes is forbidden: User "alice"
cannot list resource "nodes" in API group "" at the cluster scope``.
"""

from __future__ import annotations

from typing import Any

ALL = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
READ = ["get", "list", "watch"]
# the user-facing roles cover namespaced resources only (no nodes): meant for RoleBindings
_NAMESPACED = ["pods", "pods/log", "services", "endpoints", "configmaps", "persistentvolumeclaims", "events",
               "deployments", "daemonsets", "replicasets", "statefulsets", "jobs", "cronjobs", "poddisruptionbudgets",
               "ingresses", "networkpolicies", "serviceaccounts"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
BUILTIN_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [ALL],
    "admin": [{"apiGroups": ["*"], "resources": [*_NAMESPACED, "secrets", "roles", "rolebindings"], "verbs": READ + _WRITE},
              {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}],
    "edit": [{"apiGroups": ["*"], "resources": [*_NAMESPACED, "secrets"], "verbs": READ + _WRITE},
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ}],
    "view": [{"apiGroups": ["*"], "resources": [*_NAMESPACED, "namespaces"], "verbs": READ}],
    "system:node": [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": READ},
        {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["create", "update", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    ],
}
BUILTIN_BINDINGS = [
    ("cluster-admin", {"kind": "Group", "name": "system:masters"}),
    ("cluster-admin", {"kind": "Group", "name": "kubeadm:cluster-admins"}),
    ("system:node", {"kind": "Group", "name": "system:nodes"}),
]


def plural(kind: str) -> str:
    k = kind.lower()
    if k.endswith("y") and k[-2:-1] not in "aeiou":
        return k[:-1] + "ies"
    if k.endswith(("s", "x", "ch", "sh")):
        return k + "es"
    return k + "s"


def _matches(rule: dict, verb: str, group: str, resource: str) -> bool:
    def has(values, value) -> bool:
        return "*" in (values or []) or value in (values or [])

    return has(rule.get("verbs"), verb) and has(rule.get("apiGroups"), group) and has(rule.get("resources"), resource)


def _subject(s: dict, user: str, groups: tuple[str, ...]) -> bool:
    kind, name = s.get("kind"), s.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        return user == f"system:serviceaccount:{s.get('namespace')}:{name}"
    return False


def _role_rules(objects: dict, ref: dict, namespace: str) -> list[dict]:
    name = ref.get("name") or ""
    if ref.get("kind") == "Role":
        return list((objects.get(f"Role/{namespace}/{name}") or {}).get("rules") or [])
    stored = objects.get(f"ClusterRole//{name}")
    return list(stored.get("rules") or []) if stored else list(BUILTIN_ROLES.get(name, []))


def allowed(st: dict, user: str, groups: tuple[str, ...], verb: str, group: str, resource: str,
            namespace: str = "") -> bool:
    objects = st.get("objects") or {}
    grants: list[tuple[dict, str]] = [({"kind": "ClusterRole", "name": r}, "") for r, s in BUILTIN_BINDINGS
                                      if _subject(s, user, groups)]
    for obj in objects.values():
        if obj.get("kind") not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if obj["kind"] == "RoleBinding" and obj.get("namespace") != namespace:
            continue  # a RoleBinding grants only in its own namespace
        if any(_subject(s, user, groups) for s in obj.get("subjects") or [] if isinstance(s, dict)):
            grants.append((obj.get("roleRef") or {}, obj.get("namespace") or ""))
    return any(_matches(rule, verb, group, resource)
               for ref, ns in grants for rule in _role_rules(objects, ref, ns) if isinstance(rule, dict))


def forbidden(user: str, verb: str, group: str, resource: str, namespace: str = "") -> str:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (f'{resource.split("/")[0]} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" {where}')
