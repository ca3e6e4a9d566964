"""The simulator's cluster rules, run in-process on the state dict (no network, explicit clock)."""

from __future__ import annotations

import hashlib

import pytest

from tests.sim.kubesim import state as rules
from tests.sim.kubesim.host import SimError

TOKEN_ID, TOKEN = "abcdef", "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "1" * 64
CERT_KEY = "ab" * 32


def _h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def initialised(version: str = "v1.33.6", now: float = 1000.0) -> dict:
    st = rules.new_state()
    rules.op_init(st, {"version": version, "primary": "10.77.4.21", "caCertHash": CA_HASH,
                       "tokens": [{"id": TOKEN_ID, "hash": _h(TOKEN), "ttl": 86400}], "certKeyHash": _h(CERT_KEY),
                       "node": {"name": "cp-1", "ip": "10.77.4.21", "kubeletVersion": version,
                                "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}},
                  now)
    return st


CNI = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "calico-node", "namespace": "kube-system"},
       "spec": {"template": {"spec": {"tolerations": [{"operator": "Exists"}]}}}}


def apply_cni(st: dict, now: float = 1000.5) -> None:
    """The CNI's DaemonSet, tolerating every taint (as calico's does): its pod on each node makes it Ready."""
    rules.op_apply(st, {"objects": [CNI]}, now)


def join_args(name: str, version: str = "v1.33.6", **kw) -> dict:
    args = {"tokenId": TOKEN_ID, "tokenHash": _h(TOKEN), "caCertHashes": [CA_HASH], "controlPlane": False,
            "node": {"name": name, "ip": "10.77.4.31", "kubeletVersion": version}}
    args.update(kw)
    return args


def refused(fn, *args) -> SimError:
    with pytest.raises(SimError) as e:
        fn(*args)
    return e.value


def test_init_runs_only_once_per_cluster() -> None:
    st = initialised()
    e = refused(rules.op_init, st, {"version": "v1.33.6", "node": {"name": "cp-2"}, "caCertHash": CA_HASH}, 1001.0)
    assert "already initialised" in e.message and getattr(e, "record", False)


def test_join_with_a_valid_token_and_ca_hash_registers_the_node() -> None:
    st = initialised()
    rules.op_join(st, join_args("worker-1"), 1001.0)
    assert st["nodes"]["worker-1"]["registered"] and not st["nodes"]["worker-1"]["controlPlane"]


def test_join_rejects_an_unknown_token() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("worker-1", tokenHash=_h("abcdef.ffffffffffffffff")), 1001.0)
    assert 'could not find a JWS signature in the cluster-info ConfigMap for token ID "abcdef"' in e.message


def test_join_rejects_an_expired_token() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("worker-1"), 1000.0 + 86401)
    assert "JWS signature" in e.message


def test_join_rejects_a_ca_hash_that_is_not_the_cluster_ca() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("worker-1", caCertHashes=["sha256:" + "2" * 64]), 1001.0)
    assert "none of the public keys" in e.message and CA_HASH in e.message


def test_control_plane_join_needs_the_uploaded_certificate_key() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("cp-2", controlPlane=True, certKeyHash=_h("cd" * 32)), 1001.0)
    assert "message authentication failed" in e.message
    rules.op_join(st, join_args("cp-2", controlPlane=True, certKeyHash=_h(CERT_KEY)), 1001.0)
    assert st["nodes"]["cp-2"]["apiserverVersion"] == "v1.33.6"


def test_control_plane_join_fails_after_the_uploaded_certs_expire() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("cp-2", controlPlane=True, certKeyHash=_h(CERT_KEY)), 1000.0 + 7201)
    assert 'Secret "kubeadm-certs" was not found' in e.message


def test_join_refuses_a_name_already_taken_by_a_ready_node() -> None:
    st = initialised()
    apply_cni(st)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    e = refused(rules.op_join, st, join_args("worker-1"), 1002.0)
    assert 'a Node with name "worker-1" and status "Ready" already exists' in e.message


def test_join_refuses_a_kubelet_newer_than_the_control_plane() -> None:
    st = initialised()
    e = refused(rules.op_join, st, join_args("worker-1", node={"name": "worker-1", "kubeletVersion": "v1.34.2"}), 1001.0)
    assert "the kubelet version is higher than the control plane version" in e.message


def test_upgrade_apply_moves_the_cluster_and_this_control_plane_one_minor() -> None:
    st = initialised()
    out = rules.op_upgrade_apply(st, {"node": "cp-1", "version": "v1.34.2", "kubeadmVersion": "v1.34.2"}, 1001.0)
    assert out == {"from": "v1.33.6", "to": "v1.34.2"}
    assert st["clusterVersion"] == "v1.34.2" and st["nodes"]["cp-1"]["apiserverVersion"] == "v1.34.2"


@pytest.mark.parametrize("target,kubeadm,expected", [
    ("v1.35.1", "v1.35.1", "kubeadm can upgrade only 1 minor version at a time"),
    ("v1.34.2", "v1.33.6", 'is higher than the kubeadm version "v1.33.6"'),
    ("v1.33.5", "v1.33.5", "Downgrades are not supported"),
    ("v1.34.1", "v1.34.2", "this kubeadm only upgrades the cluster to its own version"),
])
def test_upgrade_apply_refuses_what_kubeadm_refuses(target: str, kubeadm: str, expected: str) -> None:
    st = initialised()
    e = refused(rules.op_upgrade_apply, st, {"node": "cp-1", "version": target, "kubeadmVersion": kubeadm}, 1001.0)
    assert expected in e.message and getattr(e, "record", False)
    assert st["clusterVersion"] == "v1.33.6"


def test_upgrade_apply_runs_only_on_a_control_plane() -> None:
    st = initialised()
    rules.op_join(st, join_args("worker-1"), 1001.0)
    e = refused(rules.op_upgrade_apply, st, {"node": "worker-1", "version": "v1.34.2", "kubeadmVersion": "v1.34.2"}, 1002.0)
    assert "not a control plane node" in e.message


def test_upgrade_node_is_refused_before_upgrade_apply() -> None:
    st = initialised()
    rules.op_join(st, join_args("worker-1"), 1001.0)
    e = refused(rules.op_upgrade_node, st, {"node": "worker-1", "kubeadmVersion": "v1.34.2"}, 1002.0)
    assert 'run "kubeadm upgrade apply" on the first control plane' in e.message
    rules.op_upgrade_apply(st, {"node": "cp-1", "version": "v1.34.2", "kubeadmVersion": "v1.34.2"}, 1003.0)
    assert rules.op_upgrade_node(st, {"node": "worker-1", "kubeadmVersion": "v1.34.2"}, 1004.0)["clusterVersion"] == "v1.34.2"


def test_a_kubelet_newer_than_its_api_server_does_not_register_and_is_a_violation() -> None:
    st = initialised()
    apply_cni(st)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    out = rules.op_heartbeat(st, {"node": "worker-1", "kubeletVersion": "v1.34.2"}, 1002.0)
    assert out["registered"] is False
    assert st["violations"][-1]["message"].startswith("kubelet v1.34.2 on node worker-1 is newer than the API server")


def test_first_control_plane_kubelet_may_follow_its_own_upgraded_api_server() -> None:
    st = initialised()
    rules.op_join(st, join_args("cp-2", controlPlane=True, certKeyHash=_h(CERT_KEY)), 1001.0)
    rules.op_upgrade_apply(st, {"node": "cp-1", "version": "v1.34.2", "kubeadmVersion": "v1.34.2"}, 1002.0)
    out = rules.op_heartbeat(st, {"node": "cp-1", "kubeletVersion": "v1.34.2", "apiserverVersion": "v1.34.2"}, 1003.0)
    assert out["registered"] is True and st["violations"] == []


def test_a_worker_kubelet_ahead_of_any_api_server_is_a_violation() -> None:
    st = initialised()
    rules.op_join(st, join_args("cp-2", controlPlane=True, certKeyHash=_h(CERT_KEY)), 1001.0)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    rules.op_upgrade_apply(st, {"node": "cp-1", "version": "v1.34.2", "kubeadmVersion": "v1.34.2"}, 1002.0)
    rules.op_heartbeat(st, {"node": "worker-1", "kubeletVersion": "v1.34.2"}, 1003.0)
    assert "newer than the API server v1.33.6" in st["violations"][-1]["message"]


def test_a_kubelet_more_than_three_minors_behind_is_a_violation() -> None:
    st = initialised("v1.35.1")
    st["nodes"]["cp-1"]["kubeletVersion"] = "v1.31.14"
    rules.op_heartbeat(st, {"node": "cp-1", "kubeletVersion": "v1.31.14", "apiserverVersion": "v1.35.1"}, 1001.0)
    assert "more than 3 minors older" in st["violations"][-1]["message"]


def test_kubelet_restart_on_an_undrained_node_with_pods_is_a_violation() -> None:
    st = initialised()
    apply_cni(st)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    rules.op_apply(st, {"objects": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                     "spec": {"replicas": 1}}]}, 1002.0)
    rules.op_kubelet_started(st, {"node": "worker-1", "restart": True}, 1003.0)
    assert st["violations"][-1]["message"] == "kubelet restarted on undrained node worker-1"


def test_kubelet_restart_on_a_cordoned_node_or_after_a_boot_is_fine() -> None:
    st = initialised()
    apply_cni(st)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    rules.op_apply(st, {"objects": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                                     "spec": {"replicas": 1}}]}, 1002.0)
    rules.op_kubelet_started(st, {"node": "worker-1", "restart": False}, 1003.0)
    rules.op_cordon(st, {"node": "worker-1", "unschedulable": True}, 1004.0)
    rules.op_kubelet_started(st, {"node": "worker-1", "restart": True}, 1005.0)
    assert st["violations"] == []


def test_nodes_are_not_ready_until_a_cni_is_applied_and_not_after_heartbeats_stop() -> None:
    st = initialised()
    assert rules.view(st, 1001.0)["nodes"]["cp-1"]["ready"] is False
    apply_cni(st, 1001.0)
    assert rules.view(st, 1002.0)["nodes"]["cp-1"]["ready"] is True
    assert rules.view(st, 1010.0)["nodes"]["cp-1"]["ready"] is False


def test_a_cni_daemonset_without_the_control_plane_toleration_leaves_the_control_plane_not_ready() -> None:
    st = initialised()
    rules.op_join(st, join_args("worker-1"), 1001.0)
    rules.op_apply(st, {"objects": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                     "metadata": {"name": "calico-node", "namespace": "kube-system"}}]}, 1001.0)
    ready = {n: v["ready"] for n, v in rules.view(st, 1002.0)["nodes"].items()}
    assert ready == {"cp-1": False, "worker-1": True}


def test_a_node_that_joins_after_the_cni_gets_its_pod_and_turns_ready() -> None:
    st = initialised()
    apply_cni(st, 1000.5)
    rules.op_join(st, join_args("worker-1"), 1001.0)
    assert rules.view(st, 1002.0)["nodes"]["worker-1"]["ready"] is True


def test_reset_keeps_the_node_object_and_only_kubectl_delete_node_removes_it_and_its_pods() -> None:
    st = initialised()
    rules.op_join(st, join_args("worker-1"), 1001.0)
    rules.op_apply(st, {"objects": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                     "metadata": {"name": "calico-node", "namespace": "kube-system"},
                                     "spec": {"template": {"spec": {"tolerations": [{"operator": "Exists"}]}}}}]}, 1001.0)
    assert {p["node"] for p in st["pods"].values()} == {"cp-1", "worker-1"}
    rules.op_reset(st, {"node": "worker-1"}, 1002.0)
    assert "worker-1" in st["nodes"] and {p["node"] for p in st["pods"].values()} == {"cp-1", "worker-1"}
    rules.op_delete_node(st, {"node": "worker-1"}, 1003.0)
    assert "worker-1" not in st["nodes"] and {p["node"] for p in st["pods"].values()} == {"cp-1"}
    e = refused(rules.op_delete_node, st, {"node": "worker-1"}, 1004.0)
    assert e.code == 404 and e.message == 'Error from server (NotFound): nodes "worker-1" not found'


def test_cordon_and_labels_and_taints_change_the_node() -> None:
    st = initialised()
    rules.op_cordon(st, {"node": "cp-1", "unschedulable": True}, 1001.0)
    rules.op_label(st, {"node": "cp-1", "set": {"pool": "a"}}, 1001.0)
    e = refused(rules.op_label, st, {"node": "cp-1", "set": {"pool": "b"}}, 1001.0)
    assert "--overwrite is false" in e.message
    rules.op_taint(st, {"node": "cp-1", "remove": [{"key": "node-role.kubernetes.io/control-plane"}]}, 1001.0)
    node = st["nodes"]["cp-1"]
    assert node["unschedulable"] and node["labels"]["pool"] == "a" and node["taints"] == []


@pytest.mark.parametrize(("kubelet", "violation"), [("v1.34.12", False), ("v1.33.13", True)])
def test_a_1_37_api_server_accepts_kubelets_three_minors_older_and_no_older(kubelet, violation) -> None:
    st = initialised("v1.37.1")
    st["nodes"]["cp-1"]["kubeletVersion"] = kubelet
    out = rules.op_heartbeat(st, {"node": "cp-1", "kubeletVersion": kubelet, "apiserverVersion": "v1.37.1"}, 1001.0)
    assert out["registered"] is True
    assert bool(st["violations"]) is violation


def test_kubeadm_1_37_upgrades_a_1_36_cluster_but_refuses_one_at_1_35() -> None:
    st = initialised("v1.36.5")
    rules.op_upgrade_apply(st, {"node": "cp-1", "version": "v1.37.1", "kubeadmVersion": "v1.37.1"}, 1001.0)
    assert st["clusterVersion"] == "v1.37.1"
    old = initialised("v1.35.1")
    err = refused(rules.op_upgrade_apply, old, {"node": "cp-1", "version": "v1.37.1", "kubeadmVersion": "v1.37.1"}, 1001.0)
    assert "is too high; kubeadm can upgrade only 1 minor version at a time" in str(err)


def test_join_discovery_follows_the_ca_of_the_cluster_info_configmap_once_it_is_applied() -> None:
    """A cluster CA rotation applies kube-public/cluster-info with both CAs, then the new one alone:
    kubeadm join discovers the cluster with that ConfigMap's CA and accepts a pin on any of its
    certificates; the old pin is refused once the ConfigMap holds the new CA alone."""
    import base64
    import subprocess
    import tempfile

    from tests.sim.kubesim.pki import ca_cert_hash

    def new_ca() -> str:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-subj", "/CN=kubernetes", "-days", "1", "-keyout", f"{d}/k", "-out", f"{d}/c"],
                           check=True, capture_output=True)
            return open(f"{d}/c").read()

    def cluster_info(bundle: str) -> dict:
        data = base64.b64encode(bundle.encode()).decode()
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"kubeconfig": f"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {data}\n"
                                       "    server: https://10.77.4.21:6443\n  name: \"\"\nkind: Config\n"}}

    old, new = new_ca(), new_ca()
    st = initialised()
    rules.op_apply(st, {"objects": [cluster_info(old + new)]}, 1000.5)
    rules.op_join(st, join_args("worker-1", caCertHashes=[ca_cert_hash(new)]), 1001.0)
    assert rules.op_discover(st, {}, 1001.0)["caCert"] == old + new
    rules.op_apply(st, {"objects": [cluster_info(new)]}, 1001.5)
    e = refused(rules.op_join, st, join_args("worker-2", caCertHashes=[ca_cert_hash(old)]), 1002.0)
    assert "none of the public keys" in e.message and ca_cert_hash(new) in e.message
    rules.op_join(st, join_args("worker-2", caCertHashes=[ca_cert_hash(new)]), 1002.0)
