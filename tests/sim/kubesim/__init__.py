"""kubesim: a stand-in for kubeadm, kubelet and kubectl on lab machines (a test double).

Stdlib only: it runs on minimal Debian machines with nothing but python3. See tests/sim/README.md.
"""
