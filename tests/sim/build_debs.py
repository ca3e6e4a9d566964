"""Build the simulator's Debian packages, laid out like pkgs.k8s.io (one flat repository per minor).

    python -m tests.sim.build_debs --out DIR [--versions 1.35.1,1.36.5,1.37.1] [--etcd-debs DIR]

writes DIR/kubernetes/v1.34/deb/kubeadm_1.34.2-1.1_all.deb and so on, plus cri-tools and kubernetes-cni
in every minor's directory, as upstream does. Indexing (dpkg-scanpackages) is the lab harness's job.

With --etcd-debs (or KUBESIM_ETCD_DEBS), a directory holding Debian's etcd-server and etcd-client .debs,
the real etcd binaries become the "etcd image" (package kubesim-etcd-image, which kubeadm depends on):
stacked control planes then run a real etcd as a static pod.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from tests.sim.image_catalog import text as catalog_text
from tests.sim.kubesim.images import CATALOG_FILE

# What the lab mirror offers: 1.33/1.34 (past end of life, kept to upgrade from), 1.35-1.37 (today's).
DEFAULT_VERSIONS = ("1.33.5", "1.33.6", "1.34.2", "1.35.1", "1.36.4", "1.36.5", "1.37.1")
CNI_VERSION = "1.7.1"
PKG_REVISION = "1.1"
SIM_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kubesim")
VERSIONS_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "kubeforge", "model", "versions.yaml")
MAINTAINER = "kubeforge test suite <kubesim@invalid>"

DESCRIPTIONS = {
    "kubeadm": "Command-line utility for administering a Kubernetes cluster (kubesim test double)",
    "kubelet": "Node agent for Kubernetes clusters (kubesim test double)",
    "kubectl": "Command-line utility for interacting with a Kubernetes cluster (kubesim test double)",
    "cri-tools": "Command-line utility for interacting with a container runtime (kubesim test double)",
    "kubernetes-cni": "Binaries required to provision kubernetes container networking (kubesim test double)",
    "kubesim-etcd-image": "The etcd container image's content for the kube simulator: Debian's etcd binaries",
}
ETCD_IMAGE = "kubesim-etcd-image"
ETCD_IMAGE_VERSION = "3.4.23"
ETCD_IMAGE_DIR = "usr/lib/kubesim/images/etcd"

KUBELET_SERVICE = """[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=1
# kubesim: the simulated static pods are child processes; like containers they outlive a kubelet restart
KillMode=process

[Install]
WantedBy=multi-user.target
"""

KUBEADM_DROPIN = """# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should
# use the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

ENTRY = """#!/usr/bin/python3 -I
# kubesim {component} {version}: a test double, not the real {component}
import sys
sys.path.insert(0, "/usr/lib/kubesim/{version}/{component}")
from kubesim import quick
answer = quick.answer("{component}", sys.argv[1:], "v{version}")
if answer is not None:  # a version query: no need for the rest (kubesim/quick.py)
    print(answer)
    sys.exit(0)
from kubesim import {component}
sys.exit({component}.main(sys.argv[1:], "v{version}"))
"""

CRICTL = """#!/bin/sh
# kubesim crictl stand-in: no containers ever run here
case "$1" in
  --version|-v) echo "crictl version v{version}" ;;
  version) printf 'Version:  0.1.0\\nRuntimeName:  containerd\\nRuntimeVersion:  1.6.20\\nRuntimeApiVersion:  v1\\n' ;;
  ps|pods|images) echo "CONTAINER   IMAGE   CREATED   STATE   NAME" ;;
  *) exit 0 ;;
esac
"""

POSTINST_KUBELET = """#!/bin/sh
set -e
if [ "$1" = "configure" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
"""


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def _control(name: str, version: str, depends: list[str], tree: str, extra: dict | None = None) -> None:
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tree) if "DEBIAN" not in d for f in fs)
    fields = {"Package": name, "Version": f"{version}-{PKG_REVISION}", "Architecture": "all",
              "Maintainer": MAINTAINER, "Installed-Size": str(max(1, size // 1024)), "Section": "admin",
              "Priority": "optional", "Homepage": "https://kubernetes.io"}
    if depends:
        fields["Depends"] = ", ".join(depends)
    fields.update(extra or {})
    fields["Description"] = DESCRIPTIONS[name]
    _write(os.path.join(tree, "DEBIAN", "control"), "".join(f"{k}: {v}\n" for k, v in fields.items()))


def _copy_sim(tree: str, version: str, component: str) -> None:
    dest = os.path.join(tree, f"usr/lib/kubesim/{version}/{component}/kubesim")
    os.makedirs(dest)
    for name in sorted(os.listdir(SIM_SRC)):
        if name.endswith(".py"):
            shutil.copyfile(os.path.join(SIM_SRC, name), os.path.join(dest, name))
            os.chmod(os.path.join(dest, name), 0o644)
    # what the public registries hold, from kubeforge's version data (kubesim/images.py reads it)
    _write(os.path.join(dest, CATALOG_FILE), catalog_text())
    _write(os.path.join(tree, f"usr/bin/{component}"), ENTRY.format(component=component, version=version), 0o755)
    # kubeadm's etcd per minor comes from kubeforge's own version data, never a table of the simulator's
    shutil.copyfile(VERSIONS_DATA, os.path.join(dest, "versions.yaml"))
    os.chmod(os.path.join(dest, "versions.yaml"), 0o644)


def etcd_debs(directory: str, version: str = ETCD_IMAGE_VERSION) -> tuple[str, str]:
    """Debian's etcd-server and etcd-client .debs of ``version`` in ``directory``."""
    found = []
    for pkg in ("etcd-server", "etcd-client"):
        names = sorted(n for n in os.listdir(directory) if n.startswith(f"{pkg}_{version}-") and n.endswith("_amd64.deb"))
        if not names:
            raise ValueError(f"{directory}: no {pkg}_{version}-*_amd64.deb (the etcd image is built from it)")
        found.append(os.path.join(directory, names[-1]))
    return found[0], found[1]


def _etcd_image_tree(debs: tuple[str, str], work: str) -> str:
    """Only the binaries: Debian's etcd-server package itself would start a one-member etcd on install."""
    tree = tempfile.mkdtemp(prefix=f"{ETCD_IMAGE}_", dir=work)
    os.chmod(tree, 0o755)
    unpacked = tempfile.mkdtemp(prefix="etcd-debs-", dir=work)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True, capture_output=True)
    dest = os.path.join(tree, ETCD_IMAGE_DIR)
    os.makedirs(dest)
    for binary in ("etcd", "etcdctl"):
        shutil.copyfile(os.path.join(unpacked, "usr/bin", binary), os.path.join(dest, binary))
        os.chmod(os.path.join(dest, binary), 0o755)
    _control(ETCD_IMAGE, ETCD_IMAGE_VERSION, [], tree, {"Architecture": "amd64"})
    return tree


def _tree_for(name: str, version: str, work: str, etcd_image: bool = False) -> str:
    tree = tempfile.mkdtemp(prefix=f"{name}_{version}_", dir=work)
    os.chmod(tree, 0o755)
    minor = ".".join(version.split(".")[:2])
    if name in ("kubeadm", "kubelet", "kubectl"):
        _copy_sim(tree, version, name)
    if name == "kubeadm":
        # real kubeadm pulls the etcd image at init/join; the stand-in's "image" is a package
        image = [f"{ETCD_IMAGE} (>= {ETCD_IMAGE_VERSION})"] if etcd_image else []
        _control(name, version, [f"cri-tools (>= {minor}.0)", "python3 (>= 3.9)", *image], tree)
    elif name == "kubelet":
        _write(os.path.join(tree, "lib/systemd/system/kubelet.service"), KUBELET_SERVICE)
        _write(os.path.join(tree, "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"), KUBEADM_DROPIN)
        _write(os.path.join(tree, "DEBIAN/postinst"), POSTINST_KUBELET, 0o755)
        _control(name, version, [f"kubernetes-cni (>= {'1.2.0'})", "python3 (>= 3.9)"], tree)
    elif name == "kubectl":
        _control(name, version, ["python3 (>= 3.9)"], tree)
    elif name == "cri-tools":
        _write(os.path.join(tree, "usr/bin/crictl"), CRICTL.format(version=version), 0o755)
        _control(name, version, [], tree)
    elif name == "kubernetes-cni":
        _write(os.path.join(tree, "opt/cni/bin/README.kubesim"), "CNI plugins are not simulated; this directory "
                                                                  "exists so paths match the real package.\n")
        _control(name, version, [], tree)
    return tree


def _build(job: tuple) -> str:
    name, version, minor_dir, work, image_debs = job
    if name == ETCD_IMAGE:
        tree = _etcd_image_tree(image_debs, work)
        out = os.path.join(minor_dir, f"{name}_{version}-{PKG_REVISION}_amd64.deb")
    else:
        tree = _tree_for(name, version, work, etcd_image=image_debs is not None)
        out = os.path.join(minor_dir, f"{name}_{version}-{PKG_REVISION}_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, out], check=True,
                   capture_output=True)
    return out


def build(out_dir: str, versions: list[str], etcd_debs_dir: str | None = None) -> list[str]:
    """Build every package for every version; returns the .deb paths."""
    image_debs = etcd_debs(etcd_debs_dir) if etcd_debs_dir else None
    jobs = []
    work = tempfile.mkdtemp(prefix="kubesim-debs-")
    try:
        minors = {}
        for v in versions:
            parts = v.split(".")
            if len(parts) != 3 or not all(p.isdigit() for p in parts):
                raise ValueError(f"{v!r} is not a version X.Y.Z")
            minor_dir = os.path.join(out_dir, "kubernetes", f"v{parts[0]}.{parts[1]}", "deb")
            os.makedirs(minor_dir, exist_ok=True)
            minors[minor_dir] = f"{parts[0]}.{parts[1]}"
            jobs += [(n, v, minor_dir, work, image_debs) for n in ("kubeadm", "kubelet", "kubectl")]
        for minor_dir, minor in minors.items():
            jobs.append(("cri-tools", f"{minor}.0", minor_dir, work, image_debs))
            jobs.append(("kubernetes-cni", CNI_VERSION, minor_dir, work, image_debs))
        with ThreadPoolExecutor(max_workers=8) as pool:
            debs = list(pool.map(_build, jobs))
        if image_debs is not None:
            # built once (40 MB of binaries), then linked into every minor's repository like cri-tools
            first, *rest = minors
            image = _build((ETCD_IMAGE, ETCD_IMAGE_VERSION, first, work, image_debs))
            debs.append(image)
            for minor_dir in rest:
                os.link(image, os.path.join(minor_dir, os.path.basename(image)))
                debs.append(os.path.join(minor_dir, os.path.basename(image)))
        return debs
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- an ordinary OS package for `kubeforge os upgrade` to patch ---------------------------------
# Not part of the simulator: a tiny package at two versions, so the lab mirror has an update to
# offer. The newer one asks for a reboot from its postinst, as Debian's kernel packages do through
# update-notifier-common (/var/run/reboot-required, the package named in reboot-required.pkgs).
PATCH_PACKAGE = "kubeforge-lab-patch"
PATCH_VERSIONS = ("1.0", "1.1")
PATCH_POSTINST = f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    touch /var/run/reboot-required
    grep -qx {PATCH_PACKAGE} /var/run/reboot-required.pkgs 2>/dev/null || echo {PATCH_PACKAGE} >> /var/run/reboot-required.pkgs
fi
exit 0
"""


def build_patch_debs(out_dir: str) -> list[str]:
    """``kubeforge-lab-patch`` 1.0 (no reboot) and 1.1 (reboot required) as .debs in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory() as work:
        for version in PATCH_VERSIONS:
            tree = os.path.join(work, version)
            _write(os.path.join(tree, f"usr/share/{PATCH_PACKAGE}/VERSION"), version + "\n")
            if version != PATCH_VERSIONS[0]:
                _write(os.path.join(tree, "DEBIAN/postinst"), PATCH_POSTINST, 0o755)
            _write(os.path.join(tree, "DEBIAN/control"),
                   f"Package: {PATCH_PACKAGE}\nVersion: {version}-1\nArchitecture: all\nMaintainer: {MAINTAINER}\n"
                   "Section: admin\nPriority: optional\nInstalled-Size: 1\n"
                   f"Description: kubeforge lab test package {version} (an OS update to roll out)\n")
            deb = os.path.join(out_dir, f"{PATCH_PACKAGE}_{version}-1_all.deb")
            subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", tree, deb], check=True,
                           capture_output=True)
            out.append(deb)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim.build_debs", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory (kubernetes/vX.Y/deb/ is created inside)")
    p.add_argument("--versions", default=",".join(DEFAULT_VERSIONS), help="comma-separated X.Y.Z list")
    p.add_argument("--etcd-debs", default=os.environ.get("KUBESIM_ETCD_DEBS") or None,
                   help="directory with etcd-server/etcd-client .debs for the etcd image (env KUBESIM_ETCD_DEBS)")
    a = p.parse_args(argv)
    start = time.monotonic()
    try:
        debs = build(a.out, [v.strip() for v in a.versions.split(",") if v.strip()], a.etcd_debs)
    except (ValueError, OSError, subprocess.CalledProcessError) as e:
        print(f"build_debs: {e}", file=sys.stderr)
        return 1
    for d in debs:
        print(os.path.relpath(d, a.out))
    print(f"built {len(debs)} packages in {time.monotonic() - start:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
