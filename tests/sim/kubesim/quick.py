"""The version queries that need nothing but the version: the facts script of every kubeforge run asks
each machine's kubeadm, kubelet and kubectl these. The entry scripts (build_debs.ENTRY) answer them
before importing the rest of the simulator, so one costs an interpreter's start (~15 ms) rather than
~80 ms of imports: a real binary answers in a process start, and a fleet of 100 machines asks 300 times
at once on the runner's 2 cores. The full commands print the same lines from here."""

from __future__ import annotations

KUSTOMIZE = "v5.7.1"


def kubelet_version(version: str) -> str:
    return f"Kubernetes {version}"


def kubectl_client_version(version: str) -> str:
    return f"Client Version: {version}\nKustomize Version: {KUSTOMIZE}"


def answer(component: str, argv: list[str], version: str) -> str | None:
    """What ``component argv`` prints when it is one of these queries; None for anything else."""
    if component == "kubelet" and argv in (["--version"], ["version"]):
        return kubelet_version(version)
    if component == "kubeadm" and argv in (["version", "-o", "short"], ["version", "--output", "short"],
                                           ["version", "-o=short"], ["version", "--output=short"]):
        return version
    if component == "kubectl" and argv == ["version", "--client"]:
        return kubectl_client_version(version)
    return None
