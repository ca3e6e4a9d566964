"""The simulated API server authenticates client certificates against the cluster CA and authorises
with RBAC, and kubectl verifies the server against the kubeconfig's CA (tests/sim/README.md, "API:
TLS, client certificates, RBAC")."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

from tests.sim import testing as T
from tests.sim.kubesim import host, tls, yamlish
from tests.unit.test_sim_cli import CNI, Lab, env, ready_lab, simlab  # noqa: F401 - the module's fixtures

FORBIDDEN_NODES = ('Error from server (Forbidden): nodes is forbidden: User "alice" cannot list resource "nodes" '
                   'in API group "" at the cluster scope')


def user_kubeconfig(simlab: Lab, name: str, *orgs: str) -> str:
    """What `kubeadm kubeconfig user` prints on the control plane, saved as a file."""
    argv = ["kubeconfig", "user", "--client-name", name, "--config", str(simlab.base / "init.yaml")]
    argv += [f"--org={o}" for o in orgs]
    rc, out, err = simlab.kubeadm(simlab.cp, *argv)
    assert rc == 0, err
    path = simlab.base / f"{name}.conf"
    path.write_text(out)
    return str(path)


def with_pair(simlab: Lab, name: str, pair: tuple[bytes, bytes], ca_pem: str | None = None) -> str:
    doc = yamlish.load(Path(simlab.kc).read_text())
    doc["users"] = [{"name": name, "user": {"client-certificate-data": base64.b64encode(pair[0]).decode(),
                                            "client-key-data": base64.b64encode(pair[1]).decode()}}]
    doc["contexts"][0]["context"]["user"] = name
    if ca_pem is not None:
        doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(ca_pem.encode()).decode()
    path = simlab.base / f"{name}.conf"
    path.write_text(yamlish.dump(doc))
    return str(path)


def kubectl_as(simlab: Lab, kubeconfig: str, *argv: str, stdin: str = ""):
    return T.run("kubectl", simlab.cp, [*argv, "--kubeconfig", kubeconfig], simlab.version, stdin)


def other_ca(d: Path) -> tuple[str, str]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=not-the-cluster-ca", "-keyout", f"{d}/other.key", "-out", f"{d}/other.crt"],
                   check=True, capture_output=True)
    return f"{d}/other.crt", f"{d}/other.key"


def test_kubeadms_admin_conf_is_cluster_admin_through_the_kubeadm_cluster_admins_group(ready_lab: Lab) -> None:
    doc = yamlish.load(Path(ready_lab.kc).read_text())
    pem = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"], input=pem,
                             capture_output=True, check=True).stdout.decode()
    assert "CN=kubernetes-admin" in subject and "O=kubeadm:cluster-admins" in subject
    assert ready_lab.kubectl("cordon", "worker-1")[0] == 0
    assert ready_lab.kubectl("uncordon", "worker-1")[0] == 0


def test_a_user_kubeconfig_is_forbidden_until_a_binding_grants_it_rights(ready_lab: Lab) -> None:
    alice = user_kubeconfig(ready_lab, "alice", "dev")
    rc, _, err = kubectl_as(ready_lab, alice, "get", "nodes")
    assert rc == 1 and err.strip() == FORBIDDEN_NODES
    binding = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dev-reads-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: dev}
"""
    rc, out, err = T.run("kubectl", ready_lab.cp, ["apply", "-f", "-", "--kubeconfig", ready_lab.kc],
                         ready_lab.version, binding)
    assert rc == 0, err
    rc, out, err = kubectl_as(ready_lab, alice, "get", "nodes")
    assert rc == 0 and "worker-1" in out, err
    rc, _, err = kubectl_as(ready_lab, alice, "cordon", "worker-1")  # node-reader does not patch
    assert rc == 1 and 'User "alice" cannot patch resource "nodes" in API group "" at the cluster scope' in err


def test_a_rolebinding_grants_only_in_its_namespace(ready_lab: Lab) -> None:
    bob = user_kubeconfig(ready_lab, "bob")
    rbac = """apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-reads-pods, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
"""
    rc, _, err = T.run("kubectl", ready_lab.cp, ["apply", "-f", "-", "--kubeconfig", ready_lab.kc], ready_lab.version, rbac)
    assert rc == 0, err
    assert kubectl_as(ready_lab, bob, "get", "pods", "-n", "dev")[0] == 0
    rc, _, err = kubectl_as(ready_lab, bob, "get", "pods", "-n", "default")
    assert rc == 1 and ('User "bob" cannot list resource "pods" in API group "" in the namespace "default"' in err)


def test_an_expired_client_certificate_is_unauthorized(ready_lab: Lab) -> None:
    with host.use_root(ready_lab.cp):
        pair = tls.client_certificate("carol", ["system:masters"], time.time() - 60)
    rc, _, err = kubectl_as(ready_lab, with_pair(ready_lab, "carol", pair), "get", "nodes")
    assert rc == 1 and err.strip() == "error: You must be logged in to the server (Unauthorized)"


def test_a_client_certificate_from_another_ca_is_unauthorized(ready_lab: Lab) -> None:
    csr, key = tls.new_request("mallory", ["system:masters"])
    crt = tls.sign(csr, time.time() + 3600, *other_ca(ready_lab.base))
    rc, _, err = kubectl_as(ready_lab, with_pair(ready_lab, "mallory", (crt, key)), "get", "nodes")
    assert rc == 1 and err.strip() == "error: You must be logged in to the server (Unauthorized)"


def test_kubectl_refuses_a_server_its_kubeconfig_ca_does_not_vouch_for(ready_lab: Lab) -> None:
    with host.use_root(ready_lab.cp):
        pair = tls.client_certificate("dave", ["system:masters"], time.time() + 3600)
    wrong = Path(other_ca(ready_lab.base)[0]).read_text()
    rc, _, err = kubectl_as(ready_lab, with_pair(ready_lab, "dave", pair, ca_pem=wrong), "get", "nodes")
    assert rc == 1 and err.strip() == ("Unable to connect to the server: tls: failed to verify certificate: "
                                       "x509: certificate signed by unknown authority")


def test_a_kubelet_may_read_nodes_but_not_cordon_another_node(ready_lab: Lab) -> None:
    kubelet_conf = f"{ready_lab.w}/etc/kubernetes/kubelet.conf"
    rc, out, err = kubectl_as(ready_lab, kubelet_conf, "get", "nodes")
    assert rc == 0 and "cp-1" in out, err
    rc, _, err = kubectl_as(ready_lab, kubelet_conf, "delete", "node", "cp-1")
    assert rc == 1 and 'User "system:node:worker-1" cannot delete resource "nodes"' in err


def test_an_unknown_bearer_token_is_unauthorized(ready_lab: Lab) -> None:
    doc = yamlish.load(Path(ready_lab.kc).read_text())
    doc["users"] = [{"name": "t", "user": {"token": "abcdef.0123456789abcdef"}}]
    doc["contexts"][0]["context"]["user"] = "t"
    path = ready_lab.base / "token.conf"
    path.write_text(yamlish.dump(doc))
    rc, _, err = kubectl_as(ready_lab, str(path), "get", "nodes")
    assert rc == 1 and err.strip() == "error: You must be logged in to the server (Unauthorized)"


def test_the_view_role_bound_cluster_wide_still_gives_no_nodes(ready_lab: Lab) -> None:
    # view, edit and admin are aggregated roles for namespaced resources, as in a real cluster
    erin = user_kubeconfig(ready_lab, "erin")
    binding = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: erin-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: erin}
"""
    rc, _, err = T.run("kubectl", ready_lab.cp, ["apply", "-f", "-", "--kubeconfig", ready_lab.kc], ready_lab.version, binding)
    assert rc == 0, err
    assert kubectl_as(ready_lab, erin, "get", "pods", "-A")[0] == 0
    rc, _, err = kubectl_as(ready_lab, erin, "get", "nodes")
    assert rc == 1 and 'User "erin" cannot list resource "nodes"' in err
