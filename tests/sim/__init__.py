"""The kube simulator (test double for kubeadm, kubelet, kubectl). See README.md."""
