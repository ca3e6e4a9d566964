"""The smoke test's inventory, written from the Vagrantfile's shape (``KF_SHAPE_OUT=shape.json vagrant
validate``), so names, addresses and roles have one source of truth.

    python -m tests.smoke.inventory --shape shape.json --mode offline|upstream \\
        --key KEY --known-hosts FILE [--mirror-url URL] [--version 1.33.5] [--cni FILE|URL] > inventory.yaml

``inventories/vagrant.yaml`` is this generator's output for the default shape in upstream mode; a
unit test keeps the two equal.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

DEFAULT_VERSION = "1.33.5"
ETCD_VERSION = "3.4.23"  # Debian bookworm's etcd-server: what the mirror (offline) and the box's apt (upstream) serve
FLANNEL = "https://github.com/flannel-io/flannel/releases/download/v0.26.4/kube-flannel.yml"
HEADER = """\
# The Vagrant test cluster (Vagrantfile at the top of the repository, default shape):
#   cp-1 10.77.200.21 (control plane + etcd member), worker-1 10.77.200.31, on the private network.
# kubeforge reaches the VMs on their private addresses, never on Vagrant's management/NAT address.
# Host keys are checked strictly against a known_hosts file that tests/smoke/vagrant-smoke.sh fills
# from the VMs themselves after `vagrant up` (each VM makes fresh host keys at first boot).
# The smoke script writes its own copy of this file for other shapes and for offline mode
# (python -m tests.smoke.inventory). Validate with: kubeforge validate -i inventories/vagrant.yaml
"""


def _flow(items) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def endpoint(hosts: list[dict]) -> dict:
    cps = [h["address"] for h in hosts if "control-plane" in h["roles"]]
    if len(cps) == 1:
        return {"mode": "none"}
    # No VIP on Vagrant's networks: the first control plane's address stands in for the external
    # load balancer a real site would have. Good enough to test joins and upgrades, not failover.
    return {"host": cps[0], "port": 6443, "mode": "external"}


def build(shape: dict, *, mode: str, key: str, known_hosts: str, mirror_url: str | None = None,
          version: str = DEFAULT_VERSION, cni: str | None = None) -> dict:
    if mode not in ("offline", "upstream"):
        raise ValueError(f"mode {mode!r}: offline or upstream")
    if mode == "offline" and not mirror_url:
        raise ValueError("offline mode installs from the smoke mirror: give mirror_url")
    hosts = shape["hosts"]
    packages = {"source": "mirror", "mirrorURL": mirror_url} if mode == "offline" else {"source": "upstream"}
    cni_name = "kubesim-cni" if mode == "offline" else "flannel"
    etcd = {"topology": shape["etcdTopology"], "version": ETCD_VERSION, "dataDir": "/var/lib/etcd"}
    if mode == "offline":
        # QEMU without KVM commits in 100-300 ms: etcd's LAN defaults would keep electing leaders
        etcd.update(heartbeatIntervalMs=500, electionTimeoutMs=5000)
    ssh = {"user": "vagrant", "port": 22, "identityFile": key, "knownHosts": known_hosts, "hostKeyPolicy": "strict"}
    if mode == "offline":
        ssh.update(connectTimeoutSeconds=30, connectRetries=3)  # sshd in an emulated VM answers slowly
    return {
        "apiVersion": "kubeforge.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": "vagrant"},
        "spec": {
            "kubernetesVersion": version,
            "network": {
                "podCIDR": "10.244.0.0/16",
                "serviceCIDR": "10.96.0.0/12",
                "clusterDomain": "cluster.local",
                "cni": {"name": cni_name, "manifest": cni or FLANNEL},
            },
            "controlPlaneEndpoint": endpoint(hosts),
            "etcd": etcd,
            "ssh": ssh,
            "packages": packages,
            "hosts": [{"name": h["name"], "address": h["address"], "roles": _flow(h["roles"])} for h in hosts],
        },
    }


def dump(doc: dict) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 200
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    buf.write(HEADER)
    yaml.dump(doc, buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.smoke.inventory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, type=Path)
    ap.add_argument("--mode", required=True, choices=["offline", "upstream"])
    ap.add_argument("--key", required=True)
    ap.add_argument("--known-hosts", required=True)
    ap.add_argument("--mirror-url")
    ap.add_argument("--version", default=DEFAULT_VERSION)
    ap.add_argument("--cni")
    args = ap.parse_args(argv)
    try:
        doc = build(json.loads(args.shape.read_text()), mode=args.mode, key=args.key, known_hosts=args.known_hosts,
                    mirror_url=args.mirror_url, version=args.version, cni=args.cni)
    except (OSError, ValueError, KeyError) as e:
        print(f"tests.smoke.inventory: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(dump(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
