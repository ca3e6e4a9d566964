"""The typer application and the one error boundary: only this package prints errors and exits."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from kubeforge import __version__

app = typer.Typer(
    name="kubeforge",
    help="Declarative Kubernetes provisioning for on-prem and bare-metal fleets, over plain SSH.\n\n"
    "Example: kubeforge validate -i inventories/single-node.yaml",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines ``register(app)``; heavy imports stay inside the commands so --help is instant.
COMMAND_MODULES = (
    "kubeforge.cli.inventory_cmds",  # validate, schema
    "kubeforge.cli.render_cmd",  # render
    "kubeforge.cli.certs",  # certs check
    "kubeforge.cli.hosts",  # facts, preflight
    "kubeforge.cli.etcd",  # etcd install|status|backup|restore|upgrade
    "kubeforge.cli.lifecycle",  # plan, up, upgrade, reset
    "kubeforge.cli.upgrade",  # upgrade
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Show tracebacks and debug output."),
) -> None:
    """Declarative Kubernetes provisioning for on-prem and bare-metal fleets, over plain SSH."""


@app.command("version")
def version_cmd(
    output: str = typer.Option("text", "-o", "--output", help="text, or json: every version fact with its source."),
) -> None:
    """Print kubeforge's version and the Kubernetes minors it supports.

    Example: kubeforge version -o json
    """
    from kubeforge.model.versions import version_facts, version_summary

    if output == "json":
        import json

        typer.echo(json.dumps({"kubeforge": __version__, **version_facts()}, indent=2))
    elif output == "text":
        typer.echo(f"kubeforge {__version__}")
        typer.echo(version_summary())
    else:
        from kubeforge.errors import UsageError

        raise UsageError(f"--output: '{output}' is not an output format (text, json)")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that command group is not built yet
            raise
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn kubeforge errors into one line and an exit code."""
    from kubeforge.errors import Interrupted, KubeforgeError

    _register_all()
    verbose = "-v" in (argv or sys.argv) or os.environ.get("KUBEFORGE_DEBUG") == "1"
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit:
        raise
    except KubeforgeError as exc:
        from kubeforge.cli.errors import report_error

        sys.exit(report_error(exc, verbose=verbose))
    except KeyboardInterrupt:
        from kubeforge.cli.errors import report_error

        sys.exit(report_error(Interrupted("interrupted by Ctrl-C"), verbose=verbose))
    except Exception as exc:  # a bug: say so, point at the log
        from kubeforge.cli.errors import report_bug

        sys.exit(report_bug(exc, verbose=verbose))
