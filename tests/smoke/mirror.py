"""The offline smoke test's package mirror, laid out by the lab's builder (tests/lab/mirror.py):
Debian's etcd, containerd, runc, haproxy, keepalived and their dependencies (the closure of what the
box lacks, computed against the box's own dpkg status), and the kube simulator's kubeadm/kubelet/kubectl
per minor under kubernetes/v1.NN/deb/ like pkgs.k8s.io. The smoke script serves it inside the
libvirt network namespace on the cluster network's host address.

    python -m tests.smoke.mirror --status-root DIR --out DIR     (prints the directory to serve)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.lab import mirror
from tests.lab.paths import LabError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.smoke.mirror", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--status-root", required=True, type=Path, help="a directory holding var/lib/dpkg/status of the box")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    if not (args.status_root / "var/lib/dpkg/status").is_file():
        print(f"tests.smoke.mirror: {args.status_root}/var/lib/dpkg/status is missing (build the box first)", file=sys.stderr)
        return 2
    try:
        root = mirror.prepare(args.status_root, args.out, log=lambda m: print(m, file=sys.stderr))
    except LabError as e:
        print(f"tests.smoke.mirror: {e}", file=sys.stderr)
        return 1
    if not mirror.kube_versions(root):
        print("tests.smoke.mirror: no kube simulator packages (tests/sim/build_debs.py missing?)", file=sys.stderr)
        return 1
    print(f"mirror offers Kubernetes {', '.join(mirror.kube_versions(root))}", file=sys.stderr)
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
