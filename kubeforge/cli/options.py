"""Options every command spells the same way: -i FILE, -o table|json|yaml, --yes, --dry-run, ..."""

from __future__ import annotations

import enum

import typer


class Output(str, enum.Enum):
    """Values of --output (typer shows and completes them from this enum)."""

    table = "table"
    json = "json"
    yaml = "yaml"


def _remember_output(value: Output | None) -> Output | None:
    # Eager, so the format is known before any other option can fail: an error is then printed as
    # a json/yaml error object too. Commands read the format from kubeforge.ui.output, not from
    # this parameter: some typer/click pairs (typer 0.16 with click 8.2+) hand the command None.
    if value is not None:
        from kubeforge.ui.output import set_format

        set_format(getattr(value, "value", value))
    return value


def output_option() -> Output:
    return typer.Option(
        Output.table,
        "--output",
        "-o",
        help="table: for people; json or yaml: one document on stdout, with an error object on failure.",
        callback=_remember_output,
        is_eager=True,
        case_sensitive=False,
    )


OUTPUT = output_option()
INVENTORY = typer.Option(
    ..., "-i", "--inventory", help="The inventory file (apiVersion kubeforge.io/v1alpha1, kind Cluster).",
    show_default=False, metavar="FILE",
)
YES = typer.Option(False, "--yes", "-y", help="Run the plan without asking.")
DRY_RUN = typer.Option(False, "--dry-run", help="Show what would run on every host; change nothing.")
BREAK_LOCK = typer.Option(False, "--break-lock", help="Remove a stale cluster lock first (another run's, left behind).")
HOSTS = typer.Option(None, "--hosts", help="Only these hosts (comma-separated names).", metavar="NAMES")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted or failed run after re-checking facts.")
RUN_ARG = typer.Argument(None, help="With --resume: the run to continue (default: the latest unfinished).",
                         metavar="RUN", show_default=False)
KEEP_RUNS = typer.Option(None, "--keep-runs", min=1, metavar="N",
                         help="Run records kept under .kubeforge/<cluster>/runs/ after each command (default 50).")
KEEP_RUNS_DAYS = typer.Option(None, "--keep-runs-days", min=1, metavar="DAYS",
                              help="Run records older than this are deleted (default 90).")


def split_hosts(hosts: str | None) -> list[str] | None:
    return None if hosts is None else [h.strip() for h in hosts.split(",") if h.strip()]
FORCE_BARE_PODS = typer.Option(
    False, "--force-bare-pods",
    help="Let drains delete pods no controller manages (kubectl drain --force); they are gone for good. "
         "Without it a drain meeting such a pod fails, naming it.")


def allow_bare_pods(cluster, force: bool):
    """The cluster with UpgradePolicy.force_bare_pods set from --force-bare-pods."""
    import dataclasses

    if not force:
        return cluster
    return dataclasses.replace(cluster, upgrade=dataclasses.replace(cluster.upgrade, force_bare_pods=True))
