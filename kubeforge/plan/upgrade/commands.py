"""The commands an upgrade runs, as data. Every mutating one carries a read-only guard where the
host can tell it has converged, so a re-run reports it unchanged instead of doing it again."""

from __future__ import annotations

import re
from collections.abc import Sequence
from shlex import quote as q

from kubeforge.facts.cluster import Node
from kubeforge.model import Cluster, UpgradePolicy
from kubeforge.model.kubeadm_paths import APISERVER_MANIFEST, KUBECTL
from kubeforge.model.versions import Version
from kubeforge.plan.apt import apt_update as update_sources
from kubeforge.plan.apt import install_pinned
from kubeforge.plan.kubectl import node_ready
from kubeforge.plan.steps import GateStep, RunStep
from kubeforge.render.kubeadm import UPGRADE_PATH
from kubeforge.transport.base import Command


def _deb_prefix(version: Version) -> str:
    """A grep pattern for the Debian versions of ``version``: ``^1\\.34\\.2-``."""
    return "^" + re.escape(str(version)) + "-"


def installed_and_held(components: Sequence[str], version: Version) -> Command:
    checks = "\n".join(
        f"dpkg-query -W -f='${{Version}}\\n' {c} 2>/dev/null | grep -q '{_deb_prefix(version)}' || exit 1\n"
        f"dpkg --get-selections {c} 2>/dev/null | grep -qw hold || exit 1"
        for c in components
    )
    return Command(script=checks, sudo=True, timeout=30)


def install_held(host: str, components: Sequence[str], version: Version, *, key: str, offline: bool = False) -> RunStep:
    """Unhold, install exactly ``version`` (whatever Debian revision the source has), hold again.
    ``offline``: apt reads the pushed bundle's list only."""
    names = " ".join(components)
    # apt's lists were read by this hop's apt_update step; the running kubelet is restarted by
    # the upgrade itself, inside the node's drain window, never by the package's postinst
    script = install_pinned({c: str(version) for c in components}, components, offline=offline, update=False,
                            during=f"{names} {version} is installed")
    return RunStep(
        host,
        Command(script=script, sudo=True, timeout=600, description=f"install {names} {version} and hold"),
        f"Install {' and '.join(components)} {version} and hold {'them' if len(components) > 1 else 'it'}",
        unless=installed_and_held(components, version),
        key=key,
    )


def apt_update(host: str, version: Version, *, key: str, offline: bool = False) -> RunStep:
    """Read the new minor's repository; skipped when apt already knows the target version.
    ``offline``: read the pushed bundle only, failing when apt cannot read it (apt-get update
    itself exits 0 for a source it could not fetch)."""
    guard = Command(
        script=f"apt-cache madison kubeadm 2>/dev/null | awk -F'|' '{{gsub(/ /, \"\", $2); print $2}}' | grep -q '{_deb_prefix(version)}'",
        sudo=True,
        timeout=60,
    )
    script = update_sources(offline=offline)
    return RunStep(
        host,
        Command(script=script, sudo=True, timeout=300, description="apt-get update"),
        f"Read the Kubernetes {version.minor_str} package index" + (" (offline bundle)" if offline else ""),
        unless=guard,
        key=key,
    )


def _uses_config(cluster: Cluster, version: Version) -> bool:
    from kubeforge.model.versions import kubeadm_api_version

    return kubeadm_api_version(version).endswith("v1beta4")


def _etcd_flag(cluster: Cluster, version: Version) -> str:
    # v1beta3 has no UpgradeConfiguration; kubeadm must still leave an external etcd alone.
    from kubeforge.model import EtcdTopology

    if _uses_config(cluster, version):
        return f" --config {UPGRADE_PATH}"
    return " --etcd-upgrade=false" if cluster.etcd.topology is EtcdTopology.EXTERNAL else ""


def apiserver_at(version: Version) -> Command:
    """The API server manifest on this host already names ``version`` (apply/node has run here)."""
    pattern = "kube-apiserver:" + re.escape(version.v) + "([^0-9.]|$)"
    return Command(script=f"grep -Eq {q(pattern)} {APISERVER_MANIFEST}", sudo=True, timeout=30)


def kubeadm_upgrade_plan(cluster: Cluster, host: str, version: Version, *, key: str) -> RunStep:
    return RunStep(
        host,
        Command(script=f"kubeadm upgrade plan {version.v}{_etcd_flag(cluster, version)}", sudo=True, timeout=300),
        f"Check the upgrade to {version} with kubeadm upgrade plan",
        unless=apiserver_at(version),
        key=key,
    )


def kubeadm_upgrade_apply(cluster: Cluster, host: str, version: Version, *, key: str) -> RunStep:
    return RunStep(
        host,
        Command(script=f"kubeadm upgrade apply {version.v} --yes{_etcd_flag(cluster, version)}", sudo=True, timeout=1200),
        f"Upgrade the control plane to {version} (kubeadm upgrade apply)",
        unless=apiserver_at(version),
        key=key,
    )


def kubeadm_upgrade_node(cluster: Cluster, host: str, version: Version, *, control_plane: bool, key: str) -> RunStep:
    # A worker's `upgrade node` rewrites its kubelet configuration and nothing shows it was done;
    # it is idempotent, and the journal keeps a resumed run from repeating it.
    return RunStep(
        host,
        Command(script=f"kubeadm upgrade node{_etcd_flag(cluster, version)}", sudo=True, timeout=1200),
        f"Upgrade the node configuration to {version} (kubeadm upgrade node)",
        unless=apiserver_at(version) if control_plane else None,
        key=key,
    )


FORCE_BARE_PODS = "--force-bare-pods"  # the CLI option that sets UpgradePolicy.force_bare_pods


def drain(via: str, node: str, policy: UpgradePolicy, *, key: str) -> RunStep:
    """Drain ``node`` with kubectl on ``via`` (a control plane holding admin.conf). When the drain
    fails (a PodDisruptionBudget still blocks at the timeout) the node is uncordoned again unless
    the policy says to leave it cordoned, and the step fails saying so."""
    flags = [f"--timeout={policy.drain_timeout_s}s"]
    if policy.ignore_daemonsets:
        flags.append("--ignore-daemonsets")
    if policy.delete_emptydir_data:
        flags.append("--delete-emptydir-data")
    if policy.drain_grace_period_s >= 0:
        flags.append(f"--grace-period={policy.drain_grace_period_s}")
    if policy.force_bare_pods:
        flags.append("--force")  # kubectl's own name: delete pods no controller manages
    if policy.leave_cordoned_on_failure:
        after = f'echo "kubeforge: drain of {node} failed; left cordoned (leaveCordonedOnFailure)" >&2'
    else:
        after = (f"{KUBECTL} uncordon {q(node)} >/dev/null 2>&1 || true\n"
                 f'  echo "kubeforge: drain of {node} failed; uncordoned it again, its upgrade stops here" >&2')
    # kubectl refuses pods that declare no controller without --force; say which and how to allow it
    # the pod list (namespace/name, comma separated) after kubectl's reason, wherever it stands on a line
    pods = r"[^ ,/]+/[^] ,]+"
    bare = (f"bare=$(grep -oE 'no controller \\(use --force to override\\): {pods}(, {pods})*' \"$err\" | head -n 1 | sed 's/^[^:]*: //' || true)\n"
            'if [ -n "$bare" ]; then\n'
            f'  echo "kubeforge: {node} runs pods no controller manages ($bare): a drain deletes them for good and '
            f'nothing recreates them; move or delete them, or resume with {FORCE_BARE_PODS} to let the drain delete them" >&2\n'
            "fi\n")
    script = (
        f"err=$(mktemp); {KUBECTL} drain {q(node)} {' '.join(flags)} 2>\"$err\" && rc=0 || rc=$?\n"
        'trap \'rm -f "$err"\' EXIT\n'
        'cat "$err" >&2\n'
        '[ "$rc" -eq 0 ] && exit 0\n'
        f"{{\n  {after}\n}}\n"
        + bare +
        "exit $rc\n"
    )
    return RunStep(
        via,
        Command(script=script, sudo=True, timeout=policy.drain_timeout_s + 120, description=f"drain {node}"),
        f"Drain {node} (kubectl on {via}, timeout {policy.drain_timeout_s}s)",
        key=key,
    )


def uncordon(via: str, node: str, *, key: str) -> RunStep:
    return RunStep(via, Command(script=f"{KUBECTL} uncordon {q(node)}", sudo=True, timeout=120), f"Uncordon {node} (kubectl on {via})", key=key)


def restart_kubelet(host: str, version: Version, *, key: str) -> RunStep:
    return RunStep(
        host,
        Command(script="systemctl daemon-reload\nsystemctl restart kubelet", sudo=True, timeout=120),
        f"Restart the kubelet on {version}",
        key=key,
    )


def _kubelet_field(v: str) -> str:
    """The nodeInfo field as it reads in JSON with the whitespace taken out."""
    return '"kubeletVersion":"' + v + '"'


def node_ready_at(via: str, node: str, version: Version, timeout_s: float, *, key: str) -> GateStep:
    """Ready *and* reporting the new kubelet version: a Ready seen from the old kubelet's last
    heartbeat must not let the node be uncordoned early."""
    reports = q(_kubelet_field(version.v))
    probe = Command(
        script=(
            f"{KUBECTL} get node {q(node)} -o json | tr -d ' \\n\\t' | grep -q {reports} && "
            + node_ready(node)
        ),
        sudo=True,
        timeout=60,
    )
    return GateStep(via, probe, f"Wait for {node} Ready on {version}", what=f"node {node} Ready with kubelet {version.v}",
                    timeout_s=timeout_s, interval_s=1.0, key=key)


def every_node_at(via: str, nodes: Sequence[str], version: Version, timeout_s: float, *, key: str) -> GateStep:
    """Every node of the inventory is registered, Ready, and reports kubelet ``version``."""
    want = len(nodes)
    reports = q(_kubelet_field(version.v))
    script = (
        "set -e\n"
        f"j=$({KUBECTL} get nodes -o json | tr -d ' \\n\\t')\n"
        "total=$(printf %s \"$j\" | grep -o '\"kubeletVersion\":\"[^\"]*\"' | wc -l)\n"
        f"good=$(printf %s \"$j\" | grep -o {reports} | wc -l)\n"
        f"[ \"$total\" -ge {want} ] && [ \"$good\" -eq \"$total\" ] || {{ echo \"$good of $total nodes report {version.v}\" >&2; exit 1; }}\n"
        f"{KUBECTL} wait --for=condition=Ready nodes --all --timeout=5s >/dev/null\n"
    )
    return GateStep(via, Command(script=script, sudo=True, timeout=60), f"Verify every node runs {version} and is Ready",
                    what=f"all {want} nodes Ready with kubelet {version.v}", timeout_s=timeout_s, interval_s=2.0, key=key)


def left_cordoned(node: Node | None, journaled: frozenset[str], drain_key: str, uncordon_key: str) -> bool:
    """The run being resumed drained the node (its journal has a step keyed ``drain_key``) and
    stopped before the uncordon (``uncordon_key``), and the node is still cordoned: whatever it ran
    may already be in place, but it must still be gated Ready and uncordoned, or it stays out of
    service for good. A cordon no kubeforge run made is not this."""
    done = {i.rsplit("/", 1)[-1] for i in journaled}
    return node is not None and node.unschedulable and drain_key in done and uncordon_key not in done
