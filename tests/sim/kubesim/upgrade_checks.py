"""What `kubeadm upgrade` checks before it changes anything, and how it moves a stacked etcd member.

Cluster health (cmd/kubeadm/app/phases/upgrade/health.go, CheckClusterHealth, run by `upgrade plan`
and `upgrade apply`, not by `upgrade node`): every Node labelled as a control plane is Ready
(ControlPlaneNodesReady), this machine has the control plane's static pod manifests
(StaticPodManifest), and the API answers (the checks read it). Each can be made non-fatal with
`--ignore-preflight-errors` (or the UpgradeConfiguration's ignorePreflightErrors).

Stacked etcd (cmd/kubeadm/app/phases/upgrade/staticpods.go, performEtcdStaticPodUpgrade): the member
on this machine moves to the etcd kubeadm pins for the cluster's new minor
(constants.SupportedEtcdVersion); an older pin than the running one is refused. The pin is read from
kubeforge's own version data (kubeforge/model/versions.yaml: kubeadmEtcd / etcdImageTag per minor),
shipped beside the simulator by build_debs, never from a table of the simulator's. etcd itself
refuses to start on data more than one minor older (etcd.io/docs/v3.6/upgrades/upgrade_3_6: "the
running cluster must be v3.5 or greater"); kubeadm then rolls the manifest back and fails.
"""

from __future__ import annotations

import os
import sys
import time

from . import client, etcdpod, files, host, yamlish
from .host import SimError, parse_version

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
_HERE = os.path.dirname(os.path.abspath(__file__))
# packaged: beside the simulator's modules; in this repository: kubeforge's own file
VERSIONS_FILES = (os.path.join(_HERE, "versions.yaml"),
                  os.path.join(_HERE, "..", "..", "..", "kubeforge", "model", "versions.yaml"))


# --- kubeadm's etcd per minor ----------------------------------------------------------------------

def _minors() -> dict[str, dict]:
    for p in VERSIONS_FILES:
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                return yamlish.load(f.read())["kubernetes"]["minors"]
    raise SimError(f"kubesim: no version data at {' or '.join(VERSIONS_FILES)}")


def pinned_etcd_tag(kubernetes_version: str) -> str:
    """kubeadm's etcd image tag for the minor of ``kubernetes_version`` (like kubeadm, the nearest
    known minor when the data has none for it)."""
    minors = _minors()
    major, minor, _ = parse_version(kubernetes_version)
    key = f"{major}.{minor}"
    if key not in minors:
        nearest = min(minors, key=lambda m: abs(int(m.split(".")[1]) - minor))
        print(f"W could not find officially supported version of etcd for Kubernetes {kubernetes_version}, "
              f"falling back to the nearest etcd version ({minors[nearest]['etcdImageTag']})", file=sys.stderr)
        key = nearest
    return str(minors[key]["etcdImageTag"])


def _etcd_version(tag: str) -> tuple[int, int, int]:
    return parse_version(tag.split("-")[0])


def manifest_etcd_tag() -> str | None:
    pod = files.read_manifest("etcd")
    if pod is None:
        return None
    return pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


# --- cluster health ---------------------------------------------------------------------------------

def check_cluster_health(bases: list[str], ignore: list[str]) -> None:
    from .kubeadm import _preflight

    print("[upgrade] Running cluster health checks")
    st = client.get(bases, "/kubesim/state")
    not_ready = [n for n, v in sorted(st["nodes"].items())
                 if CONTROL_PLANE_LABEL in (v.get("labels") or {}) and not v.get("ready")]
    missing = [f"{files.MANIFESTS}/{c}.yaml" for c in CONTROL_PLANE_COMPONENTS
               if not host.exists(f"{files.MANIFESTS}/{c}.yaml")]
    checks = [
        ("ControlPlaneNodesReady",
         f"there are NotReady control-planes in the cluster: [{' '.join(not_ready)}]" if not_ready else None),
        ("StaticPodManifest",
         "The control plane seems to be Static Pod-hosted, but some of the manifests don't seem to exist on disk. "
         "This probably means you're running 'kubeadm upgrade' on a remote machine, which is not supported for a "
         f"Static Pod-hosted cluster. Manifest files not found: [{' '.join(missing)}]" if missing else None)]
    try:
        _preflight(checks, ignore)
    except SimError as e:
        # kubeadm wraps the preflight error: "[upgrade/health] FATAL: [preflight] Some fatal errors occurred: ..."
        body = e.message.split("\nerror execution phase", 1)[0]
        raise SimError(f"[upgrade/health] FATAL: {body}\nTo see the stack trace of this error execute with --v=5 "
                       "or higher") from None


# --- stacked etcd -----------------------------------------------------------------------------------

def upgrade_local_etcd(kubernetes_version: str) -> None:
    """Move this machine's etcd member to kubeadm's pin for ``kubernetes_version``; nothing without a
    local etcd manifest (external etcd)."""
    current = manifest_etcd_tag()
    if current is None:
        return
    desired = pinned_etcd_tag(kubernetes_version)
    cur, want = _etcd_version(current), _etcd_version(desired)
    if want < cur:
        raise SimError(f'[upgrade/etcd] the desired etcd version "{desired}" is older than the currently installed '
                       f'"{current}". Skipping etcd upgrade')
    if want == cur:
        print(f"[upgrade/etcd] etcd {current} is already the version kubeadm {kubernetes_version} uses")
        return
    path = f"{files.MANIFESTS}/etcd.yaml"
    old = host.read(path)
    print('[upgrade/staticpods] Preparing for "etcd" upgrade')
    if want[:2] > (cur[0], cur[1] + 1):
        # etcd refuses data more than one minor older and exits; kubeadm's wait fails and it rolls back
        raise SimError(f"[upgrade/etcd] Failed to upgrade etcd: etcd {desired.split('-')[0]} does not start on the "
                       f"data of etcd {current.split('-')[0]}: etcd upgrades one minor at a time (the running cluster "
                       f"must be v{want[0]}.{want[1] - 1} or greater)\n[upgrade/etcd] Rolling back etcd data\n"
                       f"[upgrade/etcd] Etcd was rolled back and is now available\n"
                       f"static Pod hash for component etcd on Node {host.hostname()} did not change")
    pod = yamlish.load(old)
    image = pod["spec"]["containers"][0]["image"]
    pod["spec"]["containers"][0]["image"] = f"{image.rsplit(':', 1)[0]}:{desired}"
    host.write(path, yamlish.dump(pod), 0o600)
    print(f'[upgrade/staticpods] Moved new manifest to "{path}" (etcd {current} -> {desired})')
    _wait_member_restarted(desired)
    print("[upgrade/etcd] Waiting for etcd to become available")


def _wait_member_restarted(tag: str) -> None:
    """Like kubeadm: the kubelet must restart the member on the new manifest, then etcd must answer."""
    if not etcdpod.image_installed():
        return  # no etcd process behind the manifest (in-process tests)
    deadline = time.time() + float(os.environ.get("KUBESIM_WAIT_SECONDS", "60"))
    print("[upgrade/staticpods] Waiting for the kubelet to restart the component")
    while True:
        if etcdpod.running_image() == tag and etcdpod.healthy():
            return
        if time.time() > deadline:
            raise SimError(f"[upgrade/etcd] Failed to upgrade etcd: timed out waiting for etcd {tag} on this node "
                           "to answer")
        time.sleep(0.2)
