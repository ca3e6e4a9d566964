"""Where kubeadm and the kubelet keep their files on a node, and the admin kubectl built on them:
written once here, read by facts, render, PKI and every plan (kubeadm's layout,
kubernetes.io/docs/setup/best-practices/certificates/ and kubeadm's implementation details page).
Beside them, where kubeforge puts an external etcd member's certificates."""

from __future__ import annotations

KUBERNETES_DIR = "/etc/kubernetes"
MANIFESTS_DIR = f"{KUBERNETES_DIR}/manifests"
APISERVER_MANIFEST = f"{MANIFESTS_DIR}/kube-apiserver.yaml"
ETCD_MANIFEST = f"{MANIFESTS_DIR}/etcd.yaml"
KUBE_PKI = f"{KUBERNETES_DIR}/pki"
ETCD_PKI = "/etc/etcd/pki"  # kubeforge's external etcd members (stacked: KUBE_PKI/etcd, kubeadm's)
ADMIN_CONF = f"{KUBERNETES_DIR}/admin.conf"
SUPER_ADMIN_CONF = f"{KUBERNETES_DIR}/super-admin.conf"
KUBELET_CONF = f"{KUBERNETES_DIR}/kubelet.conf"
CONTROLLER_MANAGER_CONF = f"{KUBERNETES_DIR}/controller-manager.conf"
SCHEDULER_CONF = f"{KUBERNETES_DIR}/scheduler.conf"

# kubectl as the cluster's admin, on a control plane (run with sudo: admin.conf is 0600 root).
KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"
