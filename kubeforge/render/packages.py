"""Package sources: apt repositories per Kubernetes minor, a mirror, or the offline bundle, plus the
pin that keeps kubeadm/kubelet/kubectl at the exact version.

The version is a parameter because an upgrade hop rewrites these files to the next minor first.
"""

from __future__ import annotations

from kubeforge.model import Host, PackageSourceKind, RenderedFile
from kubeforge.model.versions import Version
from kubeforge.render.context import ClusterContext
from kubeforge.render.env import render_template

KUBERNETES_LIST = "/etc/apt/sources.list.d/kubernetes.list"
DEBIAN_MIRROR_LIST = "/etc/apt/sources.list.d/kubeforge-debian.list"
BUNDLE_LIST = "/etc/apt/sources.list.d/kubeforge-bundle.list"
PIN_PATH = "/etc/apt/preferences.d/kubeforge-kubernetes"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
# Where the offline workflow pushes the bundle on each host (a flat repo with a Packages index).
BUNDLE_DIR = "/var/cache/kubeforge/bundle"
# With an offline bundle, apt reads the bundle's list and nothing else: `apt-get update` never
# reaches for the host's own (unreachable) sources and keeps their old lists (List-Cleanup=0), and
# `apt-get install` picks candidates from the bundle and what is installed only.
BUNDLE_APT_OPTIONS = (
    f"-o Dir::Etc::SourceList={BUNDLE_LIST} -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0"
)


def render_packages(ctx: ClusterContext, host: Host, version: Version | None = None) -> list[RenderedFile]:
    """The sources (and pin) of a host: nodes get Kubernetes, every host the mirror or bundle."""
    version = version or ctx.version
    node = host.is_control_plane or host.is_worker
    return list(ctx.shared(("packages", str(version), node), lambda: _render(ctx, version, node)))


def _render(ctx: ClusterContext, version: Version, node: bool) -> list[RenderedFile]:
    c = ctx.cluster
    src = c.packages
    context = {
        "c": c,
        "kind": str(src.kind),
        "minor": version.minor_str,
        "version": str(version),
        "upstream_url": src.upstream_url.rstrip("/"),
        "mirror_url": (src.mirror_url or "").rstrip("/"),
        "keyring": KEYRING,
        "bundle_dir": BUNDLE_DIR,
    }

    def file(path: str, template: str) -> RenderedFile:
        return RenderedFile(path, render_template(template, **context), source=template)

    out: list[RenderedFile] = []
    if src.kind is PackageSourceKind.OFFLINE:
        out.append(file(BUNDLE_LIST, "packages/kubeforge-bundle.list.j2"))
    else:
        if node:
            out.append(file(KUBERNETES_LIST, "packages/kubernetes.list.j2"))
        if src.kind is PackageSourceKind.MIRROR:
            out.append(file(DEBIAN_MIRROR_LIST, "packages/kubeforge-debian.list.j2"))
    if node:
        out.append(file(PIN_PATH, "packages/kubernetes-pin.j2"))
    return out
