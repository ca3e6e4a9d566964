"""The inventory the lab writes for the machines it booted (format: inventories/ha-external-etcd.yaml)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from tests.lab.layout import MachineSpec
from tests.lab.paths import LabError

ETCD_VERSION = "3.4.23"  # what Debian bookworm ships, served by the lab mirror
CNI_FILE = "cni.yaml"
# The lab's nodes run the kube simulator (tests/sim), whose kubelet turns Ready once a pod of a CNI
# DaemonSet runs on it; this manifest is that stand-in CNI, so `kubeforge up` on a lab inventory
# finishes. Like calico's and flannel's node agents it tolerates every taint (control planes too).
SIM_CNI_MANIFEST = """\
# Stand-in CNI for the lab's simulated nodes (see tests/sim/README.md); no real network plugin.
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kubesim-cni
  namespace: kube-system
  labels:
    kubesim.io/cni: "true"
spec:
  selector:
    matchLabels: {app: kubesim-cni}
  template:
    metadata:
      labels: {app: kubesim-cni}
    spec:
      tolerations:
        - operator: Exists
      containers:
        - name: cni
          image: example.invalid/kubesim-cni:1
"""
ENDPOINT_MODES = ("auto", "none", "haproxy", "external")


def endpoint_for(machines: Sequence[tuple[MachineSpec, str]], mode: str, vip: str | None = None) -> dict:
    cps = [addr for m, addr in machines if "control-plane" in m.roles]
    lbs = [addr for m, addr in machines if "load-balancer" in m.roles]
    if mode not in ENDPOINT_MODES:
        raise LabError(f"endpoint mode {mode!r}: choose one of {', '.join(ENDPOINT_MODES)}")
    if mode == "auto":
        mode = "none" if len(cps) <= 1 else "haproxy" if lbs else "external"
    if not cps:
        raise LabError("the lab inventory needs at least one control-plane machine")
    if mode == "haproxy":
        if vip is None:
            raise LabError("endpoint mode haproxy needs a free address for the VIP")
        if not lbs:
            raise LabError("endpoint mode haproxy needs a load-balancer machine in the layout")
        # keepalived holds a VIP on the load balancers' bridge interface; haproxy behind it
        return {"host": vip, "port": 6443, "mode": "haproxy", "interface": "host0"}
    return {"host": cps[0], "port": 6443, "mode": mode}


def _flow(items) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()  # roles: [etcd, worker], as people write them
    return seq


def render_inventory(
    *,
    cluster_name: str,
    machines: Sequence[tuple[MachineSpec, str]],
    key_file: Path,
    known_hosts: Path,
    mirror_url: str,
    kubernetes_version: str,
    endpoint_mode: str = "auto",
    vip: str | None = None,
) -> str:
    etcd_hosts = {m.name for m, _ in machines if "etcd" in m.roles}
    cp_hosts = {m.name for m, _ in machines if "control-plane" in m.roles}
    # stacked etcd is etcd on exactly the control planes; anything else is etcd on its own hosts
    topology = "stacked" if etcd_hosts and etcd_hosts == cp_hosts else "external"
    doc = {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": cluster_name},
        "spec": {
            "kubernetesVersion": kubernetes_version,
            "network": {
                "podCIDR": "10.244.0.0/16", "serviceCIDR": "10.96.0.0/12", "clusterDomain": "cluster.local",
                "cni": {"name": "kubesim-cni", "manifest": CNI_FILE},
            },
            "controlPlaneEndpoint": endpoint_for(machines, endpoint_mode, vip),
            "etcd": {"topology": topology, "version": ETCD_VERSION, "dataDir": "/var/lib/etcd"},
            "ssh": {
                "user": "kube",
                "port": 22,
                "identityFile": str(key_file),
                "knownHosts": str(known_hosts),
                "hostKeyPolicy": "strict",
            },
            "packages": {"source": "mirror", "mirrorURL": mirror_url},
            # stacked members are the control planes themselves: the inventory gives them no etcd role
            "hosts": [{"name": m.name, "address": addr,
                       "roles": _flow(tuple(r for r in m.roles if not (topology == "stacked" and r == "etcd")))}
                      for m, addr in machines],
        },
    }
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    buf.write("# Written by the kubeforge lab (python -m tests.lab up) for machines on this runner.\n")
    yaml.dump(doc, buf)
    return buf.getvalue()
