"""The typer application and the one error boundary: only this package prints errors and exits."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from kubeforge import __version__
from kubeforge.cli.options import KEEP_RUNS, KEEP_RUNS_DAYS, OUTPUT, Output

app = typer.Typer(
    name="kubeforge",
    help="Declarative Kubernetes provisioning for on-prem and bare-metal fleets, over plain SSH.\n\n"
    "Example: kubeforge validate -i inventories/single-node.yaml",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines ``register(app)``; heavy imports stay inside the commands so --help is instant.
COMMAND_MODULES = (
    "kubeforge.cli.inventory_cmds",  # validate, schema, init
    "kubeforge.cli.render_cmd",  # render
    "kubeforge.cli.certs",  # certs check
    "kubeforge.cli.hosts",  # facts, preflight
    "kubeforge.cli.etcd",  # etcd install|status|backup|restore|members|upgrade
    "kubeforge.cli.lifecycle",  # plan, up, reset
    "kubeforge.cli.upgrade",  # upgrade
    "kubeforge.cli.node",  # node remove|replace
    "kubeforge.cli.os",  # os upgrade
    "kubeforge.cli.kubeconfig_cmd",  # kubeconfig
    "kubeforge.cli.bundle_cmd",  # bundle verify|create
)
VERBOSE_FLAGS = ("-v", "--verbose")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, *VERBOSE_FLAGS, help="Show tracebacks and debug output (anywhere on the line)."),
    keep_runs: int | None = KEEP_RUNS,
    keep_runs_days: int | None = KEEP_RUNS_DAYS,
) -> None:
    """Declarative Kubernetes provisioning for on-prem and bare-metal fleets, over plain SSH."""
    from kubeforge.cli.common import RUN_RETENTION

    RUN_RETENTION.update(keep=keep_runs, max_age_days=keep_runs_days)


@app.command("version")
def version_cmd(output: Output = OUTPUT) -> None:
    """Print kubeforge's version and the Kubernetes minors it supports.

    Example: kubeforge version -o json
    """
    from kubeforge.model.versions import version_facts, version_summary
    from kubeforge.ui.output import show

    data = {"kubeforge": __version__, **version_facts()}

    def table() -> None:
        typer.echo(f"kubeforge {__version__}")
        typer.echo(version_summary())

    show(data, table)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that command group is not built yet
            raise
        module.register(app)


_registered: list = []


def build_command():
    """The click command tree, built once, with boolean flags shown without a ``<bool>`` metavar."""
    if _registered:
        return _registered[0]
    _register_all()
    root = typer.main.get_command(app)

    def tidy(cmd) -> None:
        # click makes the help option lazily, once per command: make it now to blank its metavar too
        ctx = cmd.context_class(cmd, info_name=cmd.name, help_option_names=["-h", "--help"])
        for p in [*cmd.params, cmd.get_help_option(ctx)]:
            if getattr(p, "is_flag", False):
                p.metavar = ""
        for sub in getattr(cmd, "commands", {}).values():
            tidy(sub)

    tidy(root)
    _registered.append(root)
    return root


def split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """``-v``/``--verbose`` anywhere before ``--``: taken out here so every subcommand accepts it."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a not in VERBOSE_FLAGS] + argv[end:]
    return kept, len(kept) != len(argv)


def output_in(argv: list[str]) -> str:
    """The --output value on the line, for errors raised before the option itself is parsed."""
    from kubeforge.ui.output import FORMATS

    for i, arg in enumerate(argv):
        value = None
        if arg in ("-o", "--output") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--output="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        if value is not None and value.lower() in FORMATS:
            return value.lower()
    return "table"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn every failure into one message, an exit code, and in
    json/yaml an error object on stdout."""
    sys.exit(run(list(sys.argv[1:] if argv is None else argv)))


def run(argv: list[str]) -> int:
    from kubeforge.cli.common import prune_opened_runs

    try:
        return _run(argv)
    finally:
        prune_opened_runs()


def _is_usage_error(exc: BaseException) -> bool:
    # typer carries its own copy of click (typer._click): match click's exception base by name.
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def _run(argv: list[str]) -> int:
    from kubeforge.cli.errors import CURRENT_LOG_PATH, report_bug, report_error, report_usage
    from kubeforge.errors import Interrupted, KubeforgeError
    from kubeforge.ui import output

    argv, verbose = split_verbose(argv)
    verbose = verbose or os.environ.get("KUBEFORGE_DEBUG") == "1"
    output.reset(output_in(argv))
    CURRENT_LOG_PATH.clear()
    command = build_command()
    try:
        code = command.main(args=argv, prog_name="kubeforge", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130)
            return report_error(Interrupted("interrupted by Ctrl-C"), verbose=verbose)
        code = code if isinstance(code, int) else 0
        if code == 0:
            output.finish()
        return code
    except KubeforgeError as exc:
        return report_error(exc, verbose=verbose)
    except typer.Abort as exc:
        # click turns both Ctrl-C and an EOFError escaping the command into Abort; its own prompts
        # catch EOF on stdin themselves, so an EOFError here came from kubeforge's code: a bug, not
        # an interruption the operator caused
        if isinstance(exc.__cause__, EOFError):
            return report_bug(exc.__cause__, verbose=verbose)
        return report_error(Interrupted("interrupted"), verbose=verbose)
    except KeyboardInterrupt:
        return report_error(Interrupted("interrupted by Ctrl-C"), verbose=verbose)
    except Exception as exc:  # noqa: BLE001 - the last resort: any other error is reported as a bug, never a traceback
        if _is_usage_error(exc):
            return report_usage(exc)
        return report_bug(exc, verbose=verbose)  # a bug: say so, point at the log
