"""``kubeforge bundle verify|create``: check an offline bundle directory as `up` would and show what is
in it; assemble one from a directory of downloaded files."""

from __future__ import annotations

from pathlib import Path

import typer

from kubeforge.cli.options import OUTPUT, Output

bundle_app = typer.Typer(
    name="bundle",
    help="Offline bundles (packages.source: offline).\n\nExample: kubeforge bundle verify ./bundle",
    no_args_is_help=True,
)


@bundle_app.command("verify")
def verify(
    directory: Path = typer.Argument(..., metavar="DIR", help="The bundle directory (Packages, .debs, images/)."),
    output: Output = OUTPUT,
) -> None:
    """Check a bundle exactly as `up` does before touching a host, and list what it holds.

    The Packages index and images/manifest.json must list every file with its size and sha256
    (exit 3 naming what is missing or changed). Then, per Kubernetes version the bundle can install:
    its kubeadm/kubelet/kubectl packages, and its images per role (control plane, every node) with
    what is missing, and the sizes. Reads only this machine.

    Example: kubeforge bundle verify ./bundle -o json
    """
    from kubeforge.cli.common import consoles
    from kubeforge.errors import UsageError
    from kubeforge.ui.bundle_view import bundle_summary
    from kubeforge.ui.output import show
    from kubeforge.workflows.bundle import verify_bundle

    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    doc = verify_bundle(directory)
    show(doc, lambda: bundle_summary(doc, consoles()[0]))


@bundle_app.command("create")
def create(
    inventory: Path | None = typer.Option(None, "-i", "--inventory", metavar="FILE",
                                          help="Fetch from this inventory's registry, mirrors and etcd release site."),
    to: list[str] = typer.Option([], "--to", metavar="X.Y.Z",
                                 help="With -i: also what an upgrade to this version needs (repeatable)."),
    roles: str | None = typer.Option(None, "--roles", metavar="ROLES",
                                     help="With -i: only what these roles need (control-plane,worker,etcd,load-balancer); "
                                          "default: every role in the inventory."),
    from_dir: Path | None = typer.Option(None, "--from-dir", metavar="SRC",
                                         help="A directory of .debs, OCI image archives (*.tar) and etcd release "
                                              "archives; with -i: the .debs only."),
    mirror: str | None = typer.Option(None, "--mirror", metavar="URL",
                                      help="With -i: fetch the .debs from this apt mirror (laid out as packages.source: "
                                           "mirror expects) instead of the inventory's packages.source."),
    dpkg_status: Path | None = typer.Option(None, "--dpkg-status", metavar="FILE",
                                            help="With -i: a target host's /var/lib/dpkg/status; packages it already "
                                                 "has are not fetched (default: the whole dependency closure)."),
    out: Path = typer.Option(..., "--out", "-d", metavar="DIR", help="The bundle directory to write (new or empty)."),
    output: Output = OUTPUT,
) -> None:
    """Build an offline bundle on a connected machine, then verify it and list what it holds.

    With -i: every container image the chosen roles need for the inventory's Kubernetes version and
    each --to version (kubeadm's list, kube-vip, the CNI's) is pulled from where the hosts would pull
    it (spec.images: the repository, its mirrors, its CA and credentials; upstream otherwise) and
    written as an OCI archive; etcd's release archive and SHA256SUMS too when etcd comes from
    archives. The .debs each role installs (kubeadm, kubelet, kubectl at each version; containerd;
    etcd's; haproxy and keepalived) are downloaded with their dependencies from the inventory's apt
    mirror (packages.source: mirror, or --mirror URL) by apt-get under a private configuration in a
    temporary directory (this machine's apt state is neither used nor changed), or taken from
    --from-dir. Nothing is left in DIR when a download fails: the bundle is assembled beside it and
    renamed into place once it verifies. Exit 5: a registry or mirror unreachable or its certificate
    not trusted; exit 4: credentials refused, an image or package version missing, a digest mismatch.

    With --from-dir alone: the .debs are copied and indexed (dpkg-scanpackages --multiversion:
    Packages); each OCI archive (`ctr images export`) goes to images/ under its image's name, listed
    in images/manifest.json with its sha256 and size; etcd-v*.tar.gz and SHA256SUMS are copied.

    Examples:
      kubeforge bundle create -i site.yaml --to 1.35.2 --out ./bundle
      kubeforge bundle create -i site.yaml --roles worker --from-dir ./debs --out ./bundle
      kubeforge bundle create --from-dir ./downloads --out ./bundle
    """
    from kubeforge.cli.common import consoles
    from kubeforge.errors import UsageError
    from kubeforge.ui.bundle_view import bundle_summary
    from kubeforge.ui.output import show
    from kubeforge.workflows.bundle import create_bundle

    if inventory is None:
        if from_dir is None:
            raise UsageError("bundle create needs -i INVENTORY (fetch) or --from-dir SRC (assemble)")
        if to or roles is not None or dpkg_status is not None or mirror is not None:
            raise UsageError("--to, --roles, --mirror and --dpkg-status need -i INVENTORY")
        doc = create_bundle(from_dir, out)
    else:
        from kubeforge.inventory import load_cluster
        from kubeforge.model.versions import VersionError, parse_kube
        from kubeforge.workflows.bundle import create_from_sources
        from kubeforge.workflows.bundle_fetch import parse_roles

        cluster = load_cluster(inventory)
        versions = [cluster.kubernetes_version]
        for text in to:
            try:
                v = parse_kube(text)
            except VersionError as exc:
                raise UsageError(f"--to {text}: {exc}") from None
            if v not in versions:
                versions.append(v)
        doc = create_from_sources(cluster, out, versions=versions, roles=parse_roles(roles, cluster),
                                  debs_from=from_dir, dpkg_status=dpkg_status, mirror=mirror)
    show(doc, lambda: bundle_summary(doc, consoles()[0]))


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
