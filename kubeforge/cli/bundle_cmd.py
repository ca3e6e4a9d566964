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
    from_dir: Path = typer.Option(..., "--from-dir", metavar="SRC",
                                  help="A directory of .debs, OCI image archives (*.tar) and etcd release archives."),
    out: Path = typer.Option(..., "--out", "-d", metavar="DIR", help="The bundle directory to write (new or empty)."),
    output: Output = OUTPUT,
) -> None:
    """Assemble a bundle from files you downloaded on a connected machine, then verify it.

    The .debs are copied and indexed (dpkg-scanpackages --multiversion: Packages); each OCI archive
    (`ctr images export`) goes to images/ under its image's name, listed in images/manifest.json
    with its sha256 and size; etcd-v*.tar.gz and SHA256SUMS are copied as they are. Then the
    result is checked and listed as `bundle verify` does.

    Example: kubeforge bundle create --from-dir ./downloads --out ./bundle
    """
    from kubeforge.cli.common import consoles
    from kubeforge.ui.bundle_view import bundle_summary
    from kubeforge.ui.output import show
    from kubeforge.workflows.bundle import create_bundle

    doc = create_bundle(from_dir, out)
    show(doc, lambda: bundle_summary(doc, consoles()[0]))


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
